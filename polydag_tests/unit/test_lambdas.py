import pytest

from polydag.core.polychromic.lambdas import (
    LambdaKeyError,
    canonical_lambda_key,
    lambda_value,
    parse_lambda_key,
)


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


@pytest.mark.parametrize("given, key", [("1", "1.0"), ("0.50", "0.5"), ("0", "0.0"), ("-0", "0.0"),
                                        ("2.0", "2.0"), ("007", "7.0"), ("0.0001", "0.0001")])
def test_user_input_plain_decimals_canonicalise(given, key):
    assert parse_lambda_key(given) == key


@pytest.mark.parametrize(
    "bad, message",
    [("1e3", "not a plain decimal.*write it as 1000"), ("inf", "not finite"), ("nan", "not finite"),
     ("-inf", "not finite"), ("0x10", "not a number"), ("1,0", "not a number"),
     (" 1 ", "not a plain decimal.*write it as 1"), ("+1", "not a plain decimal"),
     (".5", "write it as 0.5"), ("1.", "not a plain decimal"), ("1_0", "not a plain decimal"),
     ("", "not a number"), ("abc", "not a number"), ("٣", "not a plain decimal"),
     ("0.00001", "would be stored as key '1e-05'"), ("1" * 20, "would be stored as key"),
     ("1" * 400, "too large")],
)
def test_user_input_that_is_not_a_plain_decimal_is_refused(bad, message):
    with pytest.raises(LambdaKeyError, match=message):
        parse_lambda_key(bad)


def test_negative_lambda_needs_the_explicit_flag():
    with pytest.raises(LambdaKeyError, match="rewards sameness.*--allow-negative"):
        parse_lambda_key("-0.5")
    assert parse_lambda_key("-0.5", allow_negative=True) == "-0.5"
    assert parse_lambda_key("-1", allow_negative=True) == "-1.0"
