"""Events for the hub's own tests, built from the contracts' documented examples."""

from uuid import UUID, uuid4

from hub.contracts.intake import ReferralReceived


def referral_received(family_id: UUID | None = None, referral_id: UUID | None = None):
    return ReferralReceived.example().model_copy(
        update={"family_id": family_id or uuid4(), "referral_id": referral_id or uuid4()}
    )
