"""``headline-sentiment``: financial-news headlines labelled positive, negative or neutral.

Generated from a seed, nothing downloaded. A headline is a frame ("BRIEF-{company} {event}")
around a company and an event whose wording carries the sentiment ("misses third-quarter
estimates", "names new chief financial officer"); numbers, quarters, brokers, cities and
products vary inside the events. The eval split uses companies whose names never occur in
training and adds two headline frames that training never uses, so it measures the learned
event -> sentiment mapping rather than recall of whole headlines. Labels are balanced.
"""

from __future__ import annotations

import random

from harness.data.examples import Example

NAME = "headline-sentiment"
LABELS = ("negative", "neutral", "positive")
N_TRAIN, N_EVAL = 1000, 150
INSTRUCTION = ("What is the sentiment of this financial news headline for the company's investors? "
               "Answer with one word: positive, negative or neutral.")

# Company names are <first> <suffix>; the first parts are split between train and eval companies.
FIRST = ("Arden", "Bellmont", "Calder", "Dunmore", "Eastfield", "Fairhaven", "Glenrock", "Harlow", "Ironvale",
         "Juniper", "Kestrel", "Larkspur", "Marlowe", "Northgate", "Oakhurst", "Pembrook", "Quarrytown",
         "Redwater", "Silverline", "Thornbury", "Upland", "Vantor", "Westmere", "Yarrow", "Zenmark", "Ashby",
         "Brightwell", "Cobalt", "Driftwood", "Emberly", "Foxley", "Granite", "Hollis", "Islay", "Jasper",
         "Kingsway", "Lindqvist", "Morrow", "Nettle", "Orrin", "Pallister", "Quillon", "Ravel", "Stanmore",
         "Tamsin", "Ulverton", "Valence", "Whitcombe", "Axton", "Brennan", "Corvale", "Delmar", "Everett",
         "Farrant", "Gilmour", "Hadley", "Inverno", "Jessop", "Kilbride", "Lowther", "Mardell", "Norbury", "Osric",
         "Prescott")
SUFFIX = ("Holdings", "Group", "Systems", "Pharmaceuticals", "Motors", "Energy", "Bank", "Foods", "Airlines",
          "Mining", "Retail", "Semiconductor", "Telecom", "Insurance", "Logistics", "Biotech", "Steel", "Media")
EVAL_COMPANY_SHARE = 0.25

TRAIN_FRAMES = ("{company} {event}", "BRIEF-{company} {event}", "UPDATE 2-{company} {event}",
                "{company} ({ticker}) {event}", "Shares in focus: {company} {event}")
EVAL_ONLY_FRAMES = ("{company} {event}, company says", "Market movers: {company} {event}")

EVENTS: dict[str, tuple[str, ...]] = {
    "positive": (
        "posts record {quarter} profit", "beats {quarter} earnings estimates", "raises full-year revenue guidance",
        "wins {amount} contract from {customer}", "shares jump {pct}% on strong demand", "upgraded to buy by {broker}",
        "lifts dividend by {pct}%", "swings to profit as costs fall", "sales surge {pct}% in {period}",
        "secures approval for new {product}", "announces {amount} share buyback",
        "narrows loss as revenue climbs {pct}%", "reports {pct}% rise in {quarter} revenue",
        "hits all-time high after upbeat outlook", "lands supply deal with {rival}", "cuts debt ahead of schedule",
        "order backlog climbs to record {amount}", "margins widen for third straight quarter",
    ),
    "negative": (
        "posts surprise {quarter} loss", "misses {quarter} earnings estimates", "cuts full-year outlook",
        "to cut {jobs} jobs as demand weakens", "shares tumble {pct}% after profit warning",
        "downgraded to sell by {broker}", "suspends dividend", "faces regulatory probe over accounting",
        "recalls {jobs} vehicles over brake fault", "sales slump {pct}% in {period}", "loses key contract to {rival}",
        "CEO resigns amid fraud allegations", "credit rating cut to junk", "fined {amount} by regulators",
        "halts production at {city} plant after fire", "revenue falls {pct}% as orders dry up",
        "shares hit five-year low", "warns of {amount} writedown",
    ),
    "neutral": (
        "to report {quarter} results on {date}", "names new chief financial officer",
        "to hold annual meeting in {city}", "moves headquarters to {city}",
        "reports {quarter} results in line with expectations", "shares little changed after {quarter} update",
        "opens new office in {city}", "keeps full-year guidance unchanged", "files annual report with regulators",
        "to present at investor conference in {city}", "announces board reshuffle", "renames its {product} unit",
        "holds dividend at {cents} cents a share", "completes previously announced share consolidation",
        "sets date for {quarter} earnings call", "says chairman to retire next year as planned",
        "hires {broker} to advise on strategic review", "confirms talks with {rival} are continuing",
    ),
}

QUARTERS = ("first-quarter", "second-quarter", "third-quarter", "fourth-quarter")
BROKERS = ("Halden Securities", "Marsh & Vey", "Corbel Capital", "Lattimer Brothers", "Ostrander Partners")
CITIES = ("Rotterdam", "Denver", "Osaka", "Lyon", "Austin", "Gdansk", "Leeds", "Monterrey", "Perth", "Porto")
PRODUCTS = ("electric van", "cholesterol drug", "memory chip", "credit card", "streaming service", "jet engine",
            "insulin pen", "solar panel", "snack brand", "5G router")
CUSTOMERS = ("the defence ministry", "a state railway", "a major carmaker", "a European utility", "the city of Leeds")
MONTHS = ("January", "March", "April", "May", "July", "August", "October", "November")


def build_headlines(seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train, eval) examples, balanced over the labels; the same for the same seed on any machine."""
    rng = random.Random(seed)
    firsts = list(FIRST)
    rng.shuffle(firsts)
    companies = [f"{first} {rng.choice(SUFFIX)}" for first in firsts]
    n_eval_companies = round(len(companies) * EVAL_COMPANY_SHARE)
    eval_companies, train_companies = companies[:n_eval_companies], companies[n_eval_companies:]
    train = _sample(rng, N_TRAIN, train_companies, TRAIN_FRAMES, set())
    seen = {example.prompt[0]["content"] for example in train}
    held_out = _sample(rng, N_EVAL, eval_companies, TRAIN_FRAMES + EVAL_ONLY_FRAMES, seen)
    return train, held_out


def prompt_for(headline: str) -> list[dict[str, str]]:
    """The one-turn chat prompt that asks for the sentiment of ``headline``."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\nHeadline: {headline}"}]


def _sample(rng: random.Random, n: int, companies: list[str], frames: tuple[str, ...],
            seen: set[str]) -> list[Example]:
    """``n`` distinct examples, label i % 3 for the i-th (balanced), in a shuffled order."""
    examples: list[Example] = []
    while len(examples) < n:
        label = LABELS[len(examples) % len(LABELS)]
        company = rng.choice(companies)
        headline = rng.choice(frames).format(company=company, ticker=_ticker(company),
                                             event=_event(rng, label, company, companies))
        prompt = prompt_for(headline)
        if prompt[0]["content"] not in seen:  # distinct headlines: no duplicate to memorise
            seen.add(prompt[0]["content"])
            examples.append(Example(prompt, label))
    rng.shuffle(examples)
    return examples


def _event(rng: random.Random, label: str, company: str, companies: list[str]) -> str:
    # Rivals come from the same split's companies, so no eval company is named in training.
    rival = rng.choice([other for other in companies if other != company])
    quarter = rng.choice(QUARTERS)
    return rng.choice(EVENTS[label]).format(
        quarter=quarter, period=f"the {quarter.replace('-', ' ')}", pct=rng.randint(2, 38),
        jobs=f"{rng.choice((150, 400, 1200, 2500, 8000)):,}",
        amount=f"${rng.randint(1, 9)} {rng.choice(('million', 'billion'))}", broker=rng.choice(BROKERS),
        city=rng.choice(CITIES), product=rng.choice(PRODUCTS), customer=rng.choice(CUSTOMERS), rival=rival,
        date=f"{rng.choice(MONTHS)} {rng.randint(2, 28)}", cents=rng.randint(5, 60))


def _ticker(company: str) -> str:
    first, suffix = company.split(" ", 1)
    return (first[:3] + suffix[:1]).upper()
