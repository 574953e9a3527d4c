import pytest

from polydag.core.polychromic.lambdas import LambdaKeyError, canonical_lambda_key, lambda_value


@pytest.mark.parametrize(
    "given, key", [("0", "0.0"), ("-0", "0.0"), (0.3, "0.3"), ("1", "1.0"), ("2.00", "2.0"),
                   ("1e-1", "0.1"), (" 0.5 ", "0.5")]
)
def test_canonical_keys(given, key):
    assert canonical_lambda_key(given) == key


@pytest.mark.parametrize("bad", ["abc", "", "nan", "inf", None, "1,0"])
def test_bad_keys_are_named(bad):
    with pytest.raises(LambdaKeyError, match="λ key"):
        canonical_lambda_key(bad)


def test_lambda_value_rejects_non_canonical_key_with_the_fix():
    assert lambda_value("0.3") == 0.3
    with pytest.raises(LambdaKeyError, match=r"polydag lambdas add 1\.0"):
        lambda_value("1")
