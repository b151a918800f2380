"""What the daemon remembers for months stays bounded, whatever it is fed."""

import pytest

from alprd.bounded import RecentSet
from alprd.systemd import SENT_KEPT, Notifier


def test_a_recent_set_forgets_the_oldest_beyond_its_limit():
    seen: RecentSet[str] = RecentSet(3)
    for name in ["a", "b", "c", "a", "d"]:  # "a" again: it counts as new
        seen.add(name)
    assert list(seen) == ["c", "a", "d"] and len(seen) == 3
    assert "b" not in seen and "a" in seen
    seen.discard("a")
    assert "a" not in seen and len(seen) == 2
    with pytest.raises(ValueError, match="limit"):
        RecentSet(0)


def test_the_notifier_keeps_only_its_last_messages():
    """A watchdog ping every 15 s for months: the history the health line reads is
    bounded (outside systemd nothing is sent, the history is still kept)."""
    notifier = Notifier({})
    notifier.ready("serving")
    for _ in range(SENT_KEPT * 4):
        notifier.watchdog()
    notifier.status("still serving")
    assert len(notifier.sent) == SENT_KEPT
    assert notifier.sent[-1] == "STATUS=still serving"
    assert not any(m.startswith("READY=1") for m in notifier.sent)
