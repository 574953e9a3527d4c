"""One spec per concept: every core setting has help text and reaches the Dagster config.

The Dagster run configs and the collapse resource are derived from the core dataclasses
(``polydag.defs.config``); these tests fail when a core field is missing from the Dagster
side, when any field the launchpad shows has no description, or when a core spec field has
no help text.
"""

import dataclasses

import pytest
from dagster import AssetsDefinition

from polydag.core.evaluation import config as evaluation_config
from polydag.core.ops.spec import HELP, Checks, setting
from polydag.core.polychromic import config as polychromic_config
from polydag.core.step_importance import config as step_config
from polydag.defs.config import DerivedConfig, described_fields, run_config
from polydag.definitions import build_defs

# Engine-internal value types of the step-importance config module: built by code from a
# StepImportanceConfig, never set by a user.
INTERNAL = {"AblationSpec", "Protocol", "Variant"}


def _user_specs():
    for module in (polychromic_config, evaluation_config, step_config):
        for value in vars(module).values():
            if (dataclasses.is_dataclass(value) and isinstance(value, type) and value.__module__ == module.__name__
                    and value.__name__ not in INTERNAL):
                yield value


def _derived_classes(defs):
    found = set()
    for asset in defs.assets:
        assert isinstance(asset, AssetsDefinition)
        config_param = asset.op.compute_fn.decorated_fn.__annotations__.get("config")
        if config_param is not None:
            found.add(config_param)
    for resource in defs.resources.values():
        if isinstance(resource, DerivedConfig):
            found.add(type(resource))
    nested = {info.annotation for cls in found for info in cls.model_fields.values()
              if isinstance(info.annotation, type) and issubclass(info.annotation, DerivedConfig)}
    return found | nested


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return build_defs(tmp_path_factory.mktemp("data"))


def test_every_core_setting_has_help_text():
    specs = list(_user_specs())
    assert {s.__name__ for s in specs} >= {
        "ReplyPairsConfig", "BaseModelConfig", "PolychromicTrainConfig", "CollapseThresholds",
        "GenerationConfig", "QualityConfig", "EmbeddingConfig", "VerdictThresholds",
        "ProblemsConfig", "CodiModelConfig", "CodiTrainConfig", "StepImportanceConfig",
    }
    missing = [f"{s.__name__}.{f.name}" for s in specs for f in dataclasses.fields(s) if not f.metadata.get(HELP)]
    assert missing == []


def test_every_config_of_every_asset_is_derived_from_core_specs(defs):
    derived = _derived_classes(defs)
    configs = {a.key.to_user_string(): a.op.compute_fn.decorated_fn.__annotations__.get("config")
               for a in defs.assets}
    hand_written = {k: c for k, c in configs.items() if c is not None and not issubclass(c, DerivedConfig)}
    assert hand_written == {}
    covered = {spec for cls in derived for spec in cls.__polydag_specs__}
    assert covered == set(_user_specs())  # every core spec is exposed somewhere


def test_every_core_field_is_in_its_dagster_config_with_a_description(defs):
    for cls in _derived_classes(defs):
        described = described_fields(cls)
        for spec in cls.__polydag_specs__:
            for f in dataclasses.fields(spec):
                if f.name in cls.__polydag_excluded__:   # set by the asset, on purpose
                    assert f.name not in described
                    continue
                assert f.name in described, f"{cls.__name__} lacks {spec.__name__}.{f.name}"
        assert all(described.values()), f"{cls.__name__}: fields without a description: " \
            f"{[k for k, v in described.items() if not v]}"


def test_the_launchpad_schema_describes_every_field(defs):
    """What the UI shows: the config schema of every asset op, nested sections included."""
    def walk(config_type, path):
        for name, field in getattr(config_type, "fields", {}).items():
            assert field.description, f"{path}.{name} has no description"
            walk(field.config_type, f"{path}.{name}")

    for asset in defs.assets:
        schema = asset.op.config_schema
        if schema is not None and getattr(schema, "config_type", None) is not None:
            walk(schema.config_type, asset.key.to_user_string())


def test_derived_config_round_trips_to_the_spec_and_validates_once():
    @dataclasses.dataclass
    class Spec:
        steps: int = setting(3, help="how many")
        names: tuple[str, ...] = setting(("a",), help="which")

        def __post_init__(self):
            Checks(self).integer("steps", low=1).done()

    Derived = run_config("Derived", [Spec], doc="test")
    assert Derived(names=["x", "y"]).spec() == Spec(steps=3, names=("x", "y"))
    with pytest.raises(ValueError, match="Spec.steps must be an integer >= 1"):
        Derived(steps=0).spec()
    with pytest.raises(TypeError, match="needs help text|description"):
        @dataclasses.dataclass
        class Bare:
            x: int = 1

        run_config("BareConfig", [Bare], doc="no help")


def test_lambda_enters_once_from_the_partition_key():
    cfg = polychromic_config.PolychromicTrainConfig.for_partition("1.0", {"max_steps": 3})
    assert cfg.diversity_weight == 1.0
    same = polychromic_config.PolychromicTrainConfig.for_partition("1.0", {"diversity_weight": 1.0})
    assert same.diversity_weight == 1.0
    with pytest.raises(ValueError, match="partition key is λ=2.0"):
        polychromic_config.PolychromicTrainConfig.for_partition("2.0", {"diversity_weight": 1.0})
    with pytest.raises(ValueError, match="not canonical"):
        polychromic_config.PolychromicTrainConfig.for_partition("1", {})


def test_step_importance_engine_settings_reach_the_dagster_config():
    """dtype, device, decoding length and chunk size are set from the launchpad; a bad dtype
    is refused by the core spec."""
    from polydag.defs.step_importance.assets import StepImportanceRunConfig

    cfg = StepImportanceRunConfig(dtype="bfloat16", device="cpu", max_new_tokens=12, chunk_size=4).spec()
    assert (cfg.dtype, cfg.device, cfg.max_new_tokens, cfg.chunk_size) == ("bfloat16", "cpu", 12, 4)
    with pytest.raises(ValueError, match="StepImportanceConfig.dtype must be one of"):
        StepImportanceRunConfig(dtype="float8").spec()
