"""The demo's dataset: customer-support tickets from which the agent extracts the order number.

Written by the project itself (no download): each ticket combines an opening, a problem phrase (of one of
four support queues), a mention of the order in one of several forms, and a closing, chosen by a seeded RNG,
so the set is the same on every machine. ``load()`` returns train / validation / held-out test splits with
no problem phrase shared between splits.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

LABELS = ("billing", "technical", "shipping", "account")
"""The queues, in the order the prompts list them."""

_PROBLEMS = {
    "billing": [
        "I was charged twice for my subscription this month",
        "my invoice shows a fee I never agreed to",
        "the refund you promised has not reached my card",
        "why did my monthly price go up without notice",
        "I need a copy of last month's invoice for my accountant",
        "my credit card payment was declined but the money left my bank",
        "please cancel the automatic renewal charge",
        "I paid for the annual plan but I am billed monthly",
        "there is a late payment fee on my statement that is wrong",
        "the discount code was not applied to my bill",
        "I want my money back for the order I cancelled",
        "you billed the wrong company name on the receipt",
    ],
    "technical": [
        "the app crashes every time I open the settings page",
        "I get error 500 when I upload a photo",
        "the website will not load on my phone",
        "sync between my laptop and tablet stopped working",
        "the export to PDF button does nothing",
        "notifications stopped arriving after the last update",
        "the screen freezes when I try to save a document",
        "your API returns a timeout for every request since this morning",
        "the search results are empty even for exact names",
        "the desktop client uses all my CPU and gets very slow",
        "videos play without sound in the browser",
        "the installer fails with a missing library error",
    ],
    "shipping": [
        "my package has not arrived after two weeks",
        "the tracking number you sent does not work",
        "the parcel was delivered to the wrong address",
        "the box arrived damaged and the item is broken",
        "can I change the delivery address of my order",
        "the courier left my order outside in the rain",
        "I received only one of the three items I ordered",
        "when will my order be shipped, it still says processing",
        "the delivery was marked as done but nothing came",
        "I need express delivery for the replacement part",
        "customs is holding my parcel and asking for papers",
        "the return label for sending the item back is missing",
    ],
    "account": [
        "I cannot log in even after resetting my password",
        "please delete my account and all my data",
        "how do I change the email address on my profile",
        "my account was locked after too many attempts",
        "someone else logged into my account from another country",
        "I want to add a second user to our team account",
        "the two-factor code never arrives on my phone",
        "how can I change my username",
        "I forgot which email I used to sign up",
        "please merge my two accounts into one",
        "I did not get the email to verify my new account",
        "how do I turn off the newsletter for my profile",
    ],
}

_ORDER_FORMS = ["order {id}", "order #{id}", "order number {id}", "order no. {id}", "purchase {id}"]
_OPENINGS = ["Hello,", "Hi team,", "Good morning.", "Dear support,", "Hey,", ""]
_CLOSINGS = ["Thanks.", "Please help.", "This is urgent!", "Regards, Sam", "Any update?", ""]


@dataclass(frozen=True, slots=True)
class Splits:
    """The dataset's splits: lists of ``{"ticket": str, "order_id": str, "queue": str}``."""

    train: list[dict[str, str]]
    val: list[dict[str, str]]
    test: list[dict[str, str]]


def load(seed: int = 7, per_problem: int = 4, train: int = 48, val: int = 48) -> Splits:
    """Generate the tickets and split them; the test split is the rest (at least 96 with the defaults).

    Every problem phrase lands in one split only, so no test ticket is a reworded training ticket.
    """
    rng = random.Random(seed)
    groups: list[list[dict[str, str]]] = []
    for label, problems in _PROBLEMS.items():
        for problem in problems:
            items = []
            for _ in range(per_problem):
                order_id = str(rng.randint(10_000, 99_999))
                order = rng.choice(_ORDER_FORMS).format(id=order_id)
                if " my " in f" {problem} " and rng.random() < 0.5:
                    body = f" {problem} ".replace(" my ", f" my {order} ", 1).strip() + "."
                else:
                    body = f"{problem}. It is about {order}."
                text = " ".join(p for p in (rng.choice(_OPENINGS), body, rng.choice(_CLOSINGS)) if p)
                items.append({"ticket": text, "order_id": order_id, "queue": label})
            groups.append(items)
    rng.shuffle(groups)
    flat = [item for group in groups for item in group]
    return Splits(train=flat[:train], val=flat[train : train + val], test=flat[train + val :])


_ORDER_ID = re.compile(r"\b\d{5}\b")


def parse_order_id(answer: str) -> str | None:
    """The first five-digit number in an answer, or None."""
    found = _ORDER_ID.search(answer)
    return found.group(0) if found else None
