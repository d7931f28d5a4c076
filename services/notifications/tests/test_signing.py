"""Standard Webhooks signatures: the published test vector, and rotation's two signatures."""

from notifications import signing

from .conftest import verify_signature


def test_the_published_standard_webhooks_vector_is_reproduced():
    # From the Standard Webhooks reference libraries: a receiver's library must accept ours.
    signature = signing.sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_during_a_rotation_either_secret_verifies_and_a_stranger_s_does_not():
    old, new, stranger = signing.new_secret(), signing.new_secret(), signing.new_secret()
    body = b'{"type":"earlyhelp.case.allocated.v1"}'
    headers = signing.headers([new, old], "msg_0123", 1700000000, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify_signature(new, headers, body) and verify_signature(old, headers, body)
    assert not verify_signature(stranger, headers, body)
    assert not verify_signature(new, headers, body + b" ")
