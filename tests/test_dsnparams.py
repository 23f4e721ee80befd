"""RFC 3461 parameters: parsed strictly, stored decoded, passed on re-encoded."""

import pytest

from gateway.dsnparams import (
    MailDSN,
    RecipientDSN,
    decode_xtext,
    encode_xtext,
    mail_parameters,
    rcpt_parameters,
    take_mail_dsn,
    take_rcpt_dsn,
    wants,
)
from gateway.errors import SMTPError


def test_ret_and_envid_are_taken_off_the_parameters():
    params = {"SIZE": "10", "RET": "hdrs", "ENVID": "QQ314159+2Bx"}
    assert take_mail_dsn(params) == MailDSN("HDRS", "QQ314159+x")
    assert params == {"SIZE": "10"}
    assert take_mail_dsn({"SIZE": "10"}) is None


@pytest.mark.parametrize("params", [
    {"RET": "BODY"}, {"RET": None}, {"ENVID": None}, {"ENVID": "a+2b"}, {"ENVID": "a+"}, {"ENVID": "x" * 101},
    {"ENVID": "a+0Ab"},
])
def test_bad_ret_or_envid_is_501(params):
    with pytest.raises(SMTPError) as e:
        take_mail_dsn(params)
    assert str(e.value.reply) == "501 5.5.4 Invalid arguments"


def test_notify_and_orcpt_are_normalised_and_decoded():
    params = {"NOTIFY": "delay,success", "ORCPT": "rfc822;b+2Bx@corp.example"}
    assert take_rcpt_dsn(params) == RecipientDSN("SUCCESS,DELAY", "rfc822;b+x@corp.example")
    assert params == {}
    assert take_rcpt_dsn({"NOTIFY": "never"}) == RecipientDSN("NEVER", "")
    assert take_rcpt_dsn({}) is None


@pytest.mark.parametrize("params", [
    {"NOTIFY": "NEVER,SUCCESS"}, {"NOTIFY": "SOMETIMES"}, {"NOTIFY": None}, {"NOTIFY": "SUCCESS,SUCCESS"},
    {"ORCPT": "b@corp.example"}, {"ORCPT": ";b@corp.example"}, {"ORCPT": "rfc822;"}, {"ORCPT": "rfc822;a=b@x"},
    {"ORCPT": None},
])
def test_bad_notify_or_orcpt_is_501(params):
    with pytest.raises(SMTPError) as e:
        take_rcpt_dsn(params)
    assert str(e.value.reply) == "501 5.5.4 Invalid arguments"


def test_xtext_round_trip():
    assert encode_xtext("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+C3+A9"
    assert decode_xtext("a+2Bb+3Dc+20d+C3+A9", "x") == "a+b=c d\u00e9"


def test_what_each_notify_asks_for():
    assert [wants("", k) for k in ("failed", "delayed", "delivered", "relayed")] == [True, True, False, False]
    assert [wants("NEVER", k) for k in ("failed", "delayed", "delivered", "relayed")] == [False] * 4
    assert [wants("SUCCESS", k) for k in ("failed", "delayed", "delivered", "relayed")] == [False, False, True, True]
    assert [wants("FAILURE,DELAY", k) for k in ("failed", "delayed", "delivered")] == [True, True, False]


def test_parameters_for_a_next_hop_with_dsn():
    assert mail_parameters("FULL", "id 1") == ["RET=FULL", "ENVID=id+201"]
    assert mail_parameters("", "") == []
    assert rcpt_parameters("SUCCESS,FAILURE", "rfc822;a+b@corp.example") == ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a+2Bb@corp.example"]
    assert rcpt_parameters("", "") == []
