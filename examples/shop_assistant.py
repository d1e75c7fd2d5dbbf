"""A small support assistant for an online shop: the application under test.

It calls OpenAI the way real applications do: some functions take a client,
others build their own from the environment (OPENAI_API_KEY, OPENAI_BASE_URL).
"""

from __future__ import annotations

import asyncio

import openai

LABELS = ("billing", "shipping", "returns", "other")
MODEL = "gpt-4o-mini"


def summarise(ticket: str, client: openai.OpenAI) -> str:
    """A two-line summary of a customer ticket, for the support inbox."""
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Summarise the customer's ticket in two short lines."},
            {"role": "user", "content": ticket},
        ],
        max_tokens=20,
    )
    return (reply.choices[0].message.content or "").strip()


def classify(ticket: str) -> str:
    """One of LABELS for a ticket; 'other' when the model answers anything else."""
    with openai.OpenAI() as client:  # built here, not passed in: the plugin still covers it
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": f"Answer with one word among: {', '.join(LABELS)}."},
                {"role": "user", "content": ticket},
            ],
            temperature=0,
            max_tokens=3,
        )
    words = (reply.choices[0].message.content or "").lower().split()
    return next((word for word in words if word in LABELS), "other")


async def triage(tickets: list[str]) -> list[str]:
    """Summaries of many tickets at once (calls fired together with asyncio.gather)."""
    async with openai.AsyncOpenAI() as client:

        async def one(ticket: str) -> str:
            reply = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"One line for: {ticket}"}], max_tokens=8
            )
            return (reply.choices[0].message.content or "").strip()

        return list(await asyncio.gather(*(one(t) for t in tickets)))


def draft_reply(ticket: str, client: openai.OpenAI) -> str:
    """A reply to the customer, streamed as it is written."""
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Write a polite reply to: {ticket}"}],
        stream=True,
        max_tokens=24,
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
