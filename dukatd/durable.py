"""What a call of the scheduler's service waits for of the journal before it answers, and the
status it answers when the journal cannot give it: nothing is shown or promised that a crash
could take back."""

from __future__ import annotations

from dukat.errors import JournalWriteError, Refused
from dukatd.journal import Journal

__all__ = ["durable", "refuse_if_frozen"]


def refuse_if_frozen(journal: Journal) -> None:
    """The drain has stopped the journal: what is asked now would not survive the restart."""
    if journal.frozen:
        raise Refused(
            "UNAVAILABLE",
            "dukatd is shutting down and records nothing more; ask again once it is back",
        )


async def durable(journal: Journal, consequence: str, *, accepted: str = "") -> None:
    """Wait until the journal has written everything so far (and the job `accepted`, if
    given); a status saying `consequence` if it cannot: RESOURCE_EXHAUSTED when it is full,
    else UNAVAILABLE."""
    try:
        await journal.sync()
        if accepted:
            journal.check_accepted(accepted)
    except JournalWriteError as error:
        raise Refused(
            "RESOURCE_EXHAUSTED" if error.full else "UNAVAILABLE", f"{error}; {consequence}"
        ) from None
