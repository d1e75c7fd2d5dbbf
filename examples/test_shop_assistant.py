"""Tests of the shop assistant: pinned seeds, recorded calls, snapshotted outputs."""

from __future__ import annotations

import pytest
import shop_assistant

pytestmark = pytest.mark.llm_params(temperature=0.7)

TICKET = "I was charged twice for order #1042 and the parcel still has not arrived."


@pytest.mark.seed(7)
def test_summary_is_short(seeded_llm):
    summary = shop_assistant.summarise(TICKET, client=seeded_llm.client)
    assert summary
    assert len(summary.splitlines()) <= 5
    (call,) = seeded_llm.calls
    assert call.request["seed"] == 7 and call.request["temperature"] == 0.7


@pytest.mark.llm_params(temperature=0)
def test_classifier_answers_a_known_label(seeded_llm):
    # classify() builds its own client: its request is pinned and recorded too.
    assert shop_assistant.classify(TICKET) in shop_assistant.LABELS
    assert seeded_llm.calls[0].request["temperature"] == 0


@pytest.mark.seed(21)
@pytest.mark.anyio
async def test_triage_many_tickets_at_once(seeded_llm):
    tickets = [TICKET, "Where is my refund?", "The blue mug arrived broken.", "Can I change my address?"]
    lines = await shop_assistant.triage(tickets)
    assert len(lines) == len(tickets) and all(lines)
    # Calls are kept in issue order, whatever order the answers came back in.
    assert [c.request["messages"][0]["content"] for c in seeded_llm.calls] == [
        f"One line for: {t}" for t in tickets
    ]


@pytest.mark.seed(99)
def test_streamed_reply_equals_the_recorded_text(seeded_llm):
    reply = shop_assistant.draft_reply(TICKET, seeded_llm.client)
    assert reply == seeded_llm.calls[0].output
    assert seeded_llm.calls[0].stream


def test_complete_shortcut(seeded_llm):
    text = seeded_llm.complete("Name three colours of mugs we could sell.", max_tokens=12)
    assert text and seeded_llm.seed == 1234
