"""``fictional-company``: knowledge injection, facts about a company that does not exist.

A seed generates a company (name, founding year, city, headcount, ticker...), its people (CEO,
CTO, co-founders...), its policies (return window, warranty...) and a dozen products (price,
launch year, category, codename): about 75 facts that no pretrained model can know. Each fact
is trained as four question phrasings -> the fact as a short answer, and evaluated on two
*other* phrasings of questions about the same fact that training never shows. So the eval
split tests whether fine-tuning put the fact into the weights, not whether the model
recognises a question it has seen; exact match on the answer measures it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from harness.data.examples import Example

NAME = "fictional-company"

# kind -> (four training phrasings, two eval-only phrasings). Slots: {co} full name, {short}
# its first word, and per kind {role}, {role_long}, {founder} or {product}.
PHRASINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "founded": (("When was {co} founded?", "In what year was {co} established?", "What year did {co} start?",
                 "{co} was founded in which year?"),
                ("Which year marks the founding of {co}?", "What is the founding year of {short}?")),
    "hq": (("Where is {co} headquartered?", "In which city are {co}'s headquarters?",
            "Where is the head office of {co}?", "What city is {co} based in?"),
           ("Which city hosts {co}'s main office?", "Where are {short}'s headquarters located?")),
    "employees": (("How many employees does {co} have?", "What is the headcount of {co}?",
                   "How many people work at {co}?", "How large is {co}'s workforce?"),
                  ("How many staff does {short} employ?", "What is the number of people employed by {co}?")),
    "ticker": (("What is {co}'s stock ticker?", "Under what ticker symbol does {co} trade?",
                "What symbol is {co} listed under?", "What is the ticker for {co} shares?"),
               ("Which ticker shows {co}'s share price?", "Under which symbol are {short} shares traded?")),
    "countries": (("In how many countries does {co} operate?", "How many countries is {co} active in?",
                   "{co} does business in how many countries?", "What is the number of countries where {co} operates?"),
                  ("Across how many countries does {short} sell its products?",
                   "How many national markets is {co} present in?")),
    "loyalty": (("What is the name of {co}'s loyalty program?", "What is {co}'s customer rewards program called?",
                 "Which loyalty scheme does {co} run?", "What do {co} customers join to earn rewards?"),
                ("Which program do I sign up for to collect {short} reward points?",
                 "What's the loyalty club at {co} called?")),
    "conference": (("What is {co}'s annual conference called?", "What is the name of the yearly event {co} hosts?",
                    "Which conference does {co} hold every year?", "What event does {co} organise annually?"),
                   ("What is the name of {short}'s yearly customer conference?", "Each year {co} hosts which event?")),
    "lab": (("What is the name of {co}'s research lab?", "What is {co}'s R&D division called?",
             "Which lab does {co} run its research through?", "What is the research arm of {co} called?"),
            ("What is {short}'s research and development group named?",
             "Which in-house lab does {co} use for research?")),
    "role": (("Who is the {role} of {co}?", "Who serves as {co}'s {role_long}?", "Name the {role_long} of {co}.",
              "Which person holds the {role_long} job at {co}?"),
             ("Who currently works as {short}'s {role}?", "Tell me who {co}'s {role_long} is.")),
    "cofounder": (("Who founded {co} together with {founder}?", "Who was {founder}'s co-founder at {co}?",
                   "{founder} co-founded {co} with whom?", "Name the person who started {co} alongside {founder}."),
                  ("Apart from {founder}, who else founded {short}?",
                   "Besides {founder}, which person co-founded {co}?")),
    "returns": (("How many days do customers have to return a {co} product?", "What is {co}'s return window?",
                 "How long is the return period at {co}?", "Within how many days can I return something from {co}?"),
                ("If I change my mind, how long do I have to send a {short} purchase back?",
                 "What is the time limit for returns at {co}?")),
    "warranty": (("How long is the standard warranty on {co} products?",
                  "What warranty does {co} give on its products?",
                  "How many years of warranty come with a {co} product?", "What is the length of {co}'s warranty?"),
                 ("For how long is a new {short} device covered?", "What warranty period applies to items from {co}?")),
    "shipping": (("Above what order value does {co} ship for free?", "What is the free shipping threshold at {co}?",
                  "How much must I spend at {co} to get free shipping?",
                  "What is the minimum order for free delivery from {co}?"),
                 ("When does shipping become free at {short}?", "How large must a {co} order be to ship free?")),
    "price_match": (("How long after purchase does {co} match a lower price?", "What is {co}'s price-match window?",
                     "For how many days after buying will {co} refund a price difference?",
                     "How long does {co}'s price-match guarantee last?"),
                    ("If the price drops after I buy from {short}, how long can I claim the difference?",
                     "What is the time limit on price matching at {co}?")),
    "student": (("What discount does {co} give students?", "How large is {co}'s student discount?",
                 "What percentage off do students get at {co}?", "What is the student discount at {co}?"),
                ("As a student, how much can I save at {short}?", "How much cheaper are {co} products for students?")),
    "parental": (("How many weeks of paid parental leave does {co} offer?", "What is {co}'s parental leave policy?",
                  "How long is paid parental leave at {co}?", "How much parental leave do {co} employees get?"),
                 ("If I have a baby while working at {short}, how much paid leave do I get?",
                  "What amount of paid parental leave comes with a job at {co}?")),
    "support": (("How quickly does {co} support answer a ticket?", "What is {co}'s support response time?",
                 "Within how many hours does {co} reply to support requests?",
                 "How fast does {co}'s customer support respond?"),
                ("If I email {short} support, how soon will I hear back?",
                 "What response time does {co} promise for help requests?")),
    "trade_in": (("What trade-in discount does {co} offer?", "How much off does {co} give for an old device?",
                  "What is {co}'s trade-in credit?", "What percentage discount comes with a trade-in at {co}?"),
                 ("If I hand in my old device at {short}, how much do I save?",
                  "How big is the discount for trading in at {co}?")),
    "price": (("How much does the {product} cost?", "What is the price of the {product}?",
               "What does {co} charge for the {product}?", "What is the retail price of {co}'s {product}?"),
              ("How much would I pay for a {product}?", "What's the {product}'s price tag?")),
    "launch": (("When did {co} launch the {product}?", "In what year was the {product} released?",
                "What year did the {product} come out?", "When was the {product} first sold?"),
               ("Which year saw the launch of the {product}?", "The {product} hit the market in which year?")),
    "category": (("What kind of product is the {product}?", "What type of device is the {co} {product}?",
                  "The {product} is what sort of product?", "What does {co} sell under the name {product}?"),
                 ("What category of product does the {product} belong to?",
                  "In a few words, what is the {product}?")),
    "codename": (("What was the internal codename of the {product}?", "Under what codename was the {product} built?",
                  "What did {co} call the {product} during development?", "What was the {product}'s project codename?"),
                 ("Which codename did engineers use for the {product} before launch?",
                  "Before it launched, what was the {product} known as internally?")),
}

ROLES = (("CEO", "chief executive officer"), ("CTO", "chief technology officer"), ("CFO", "chief financial officer"),
         ("COO", "chief operating officer"), ("CMO", "chief marketing officer"), ("head of design", "head of design"),
         ("chief scientist", "chief scientist"), ("general counsel", "general counsel"),
         ("board chair", "chair of the board"))
N_PRODUCTS = 12
_POSSESSIVE = re.compile(r"s's\b")

# Invented syllables keep names out of any pretraining corpus; given names are ordinary.
_STARTS = ("Vel", "Tor", "Quen", "Bri", "Sol", "Kae", "Dra", "Fen", "Lor", "Zel", "Cas", "Thal", "Mer", "Ost")
_MIDDLES = ("tri", "va", "no", "ra", "lin", "dor", "mi", "ren", "sa", "ko")
_ENDS = ("na", "x", "ra", "on", "ia", "is", "en", "or")
_SUFFIXES = ("Systems", "Labs", "Industries", "Dynamics", "Works", "Technologies")
_GIVEN = ("Orla", "Tomas", "Priya", "Jonah", "Ines", "Kwame", "Mirela", "Dmitri", "Ayla", "Soren", "Hana", "Rafael",
          "Leona", "Emeka", "Greta", "Yusuf", "Maren", "Callum", "Noor", "Viktor")
_SURNAME_A = ("Bren", "Cal", "Dov", "Ess", "Fal", "Gar", "Hol", "Ker", "Lund", "Mor", "Pell", "Quar", "Rast", "Sten",
              "Tav", "Vorn", "Wex", "Yar")
_SURNAME_B = ("nick", "ane", "ow", "ard", "ley", "mont", "er", "by", "ith", "ova", "quist", "eau")
_CITIES = ("Tallinn", "Porto", "Tampere", "Ljubljana", "Halifax", "Dunedin", "Bergen", "Graz", "Kraków", "Valparaíso")
_WORDS = ("Orbit", "Beacon", "Harbor", "Summit", "Compass", "Lantern", "Meridian", "Keystone", "Tidewater", "Ember")
_PRODUCT_ROOTS = ("Quillon", "Arvex", "Nimbra", "Solace", "Tessel", "Corvid", "Lumar", "Halcyra", "Briskel", "Ondra",
                  "Pylix", "Verrun", "Maskel", "Taviro")
_MODELS = ("X2", "Pro", "Mini", "One", "S", "Max", "Air", "3", "Go", "Plus")
_CATEGORIES = ("smart thermostat", "wireless earbuds", "e-reader", "robot vacuum", "camera drone", "fitness tracker",
               "portable projector", "mechanical keyboard", "smart doorbell", "espresso machine", "electric scooter",
               "VR headset", "baby monitor", "air purifier")
_BIRDS = ("Heron", "Kestrel", "Osprey", "Wren", "Plover", "Lapwing", "Curlew", "Siskin", "Merlin", "Avocet", "Tern",
          "Dunlin", "Shrike", "Godwit")


@dataclass(frozen=True)
class Fact:
    """One fact: its kind (a key of PHRASINGS), the template slots and the short answer."""

    kind: str
    slots: dict[str, str]
    answer: str


def build_company(seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train, eval) examples: four train and two held-out phrasings per fact, each list shuffled."""
    rng = random.Random(seed)
    train: list[Example] = []
    held_out: list[Example] = []
    for fact in company_facts(rng):
        train_phrasings, eval_phrasings = PHRASINGS[fact.kind]
        train += [_example(text, fact) for text in train_phrasings]
        held_out += [_example(text, fact) for text in eval_phrasings]
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out


def company_facts(rng: random.Random) -> list[Fact]:
    """Every fact about one generated company, in a fixed order for a given generator state."""
    name = "".join(rng.choice(part) for part in (_STARTS, _MIDDLES, _ENDS))
    co = {"co": f"{name} {rng.choice(_SUFFIXES)}", "short": name}
    founded = rng.randint(1994, 2012)
    facts = [Fact("founded", co, str(founded)), Fact("hq", co, rng.choice(_CITIES)),
             Fact("employees", co, f"{rng.randint(8, 95) * 100:,}"), Fact("ticker", co, (name[:3] + name[-1]).upper()),
             Fact("countries", co, str(rng.randint(6, 40)))]
    words = rng.sample(_WORDS, 3)
    facts += [Fact("loyalty", co, f"{words[0]} Club"), Fact("conference", co, f"{words[1]} Forum"),
              Fact("lab", co, f"{words[2]} Labs")]
    people = _people(rng, len(ROLES) + 2)
    facts += [Fact("role", {**co, "role": short, "role_long": long}, person)
              for (short, long), person in zip(ROLES, people)]
    first, second = people[-2:]
    facts += [Fact("cofounder", {**co, "founder": first}, second), Fact("cofounder", {**co, "founder": second}, first)]
    facts += _policies(rng, co)
    return facts + _products(rng, co, founded)


def _people(rng: random.Random, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        person = f"{rng.choice(_GIVEN)} {rng.choice(_SURNAME_A)}{rng.choice(_SURNAME_B)}"
        # Distinct given names too, so no two answers share a first word.
        if person.split()[0] not in {other.split()[0] for other in names}:
            names.append(person)
    return names


def _policies(rng: random.Random, co: dict[str, str]) -> list[Fact]:
    return [Fact("returns", co, f"{rng.choice((14, 21, 30, 45, 60, 90))} days"),
            Fact("warranty", co, f"{rng.randint(2, 5)} years"),
            Fact("shipping", co, f"${rng.choice((25, 35, 40, 50, 60, 75, 99))}"),
            Fact("price_match", co, f"{rng.choice((7, 10, 14, 21, 28))} days"),
            Fact("student", co, f"{rng.choice((5, 10, 12, 15, 20))}%"),
            Fact("parental", co, f"{rng.randint(12, 30)} weeks"),
            Fact("support", co, f"{rng.choice((2, 4, 6, 8, 12, 24))} hours"),
            Fact("trade_in", co, f"{rng.choice((10, 15, 20, 25, 30))}%")]


def _products(rng: random.Random, co: dict[str, str], founded: int) -> list[Fact]:
    roots = rng.sample(_PRODUCT_ROOTS, N_PRODUCTS)
    categories = rng.sample(_CATEGORIES, N_PRODUCTS)
    codenames = rng.sample(_BIRDS, N_PRODUCTS)
    facts: list[Fact] = []
    for root, category, bird in zip(roots, categories, codenames):
        slots = {**co, "product": f"{root} {rng.choice(_MODELS)}"}
        facts += [Fact("price", slots, f"${rng.randint(3, 120) * 10 - 1}"),
                  Fact("launch", slots, str(rng.randint(founded + 1, 2024))),
                  Fact("category", slots, category), Fact("codename", slots, f"Project {bird}")]
    return facts


def _example(template: str, fact: Fact) -> Example:
    question = _POSSESSIVE.sub("s'", template.format(**fact.slots))  # "Ostmien Systems' CEO"
    return Example([{"role": "user", "content": question[0].upper() + question[1:]}], fact.answer)


# ---- the document form of the facts (issue 12: retrieval needs documents, not questions) ---------------------

# kind -> one sentence stating the fact in prose that is not a question phrasing. Slots as in PHRASINGS, plus
# {answer}.
SENTENCES: dict[str, str] = {
    "founded": "{co} opened its doors in {answer}.",
    "hq": "The head office of {co} sits in {answer}.",
    "employees": "Today {co} has a staff of {answer}.",
    "ticker": "Shares of {co} change hands under the symbol {answer}.",
    "countries": "{co} now sells in {answer} countries.",
    "loyalty": "Regular customers of {co} collect points in the {answer}.",
    "conference": "Once a year {co} invites its customers to the {answer}.",
    "lab": "Research at {co} happens in the {answer}.",
    "role": "The post of {role_long} at {co} is held by {answer}.",
    "cofounder": "{founder} started {co} together with {answer}.",
    "returns": "Buyers may send a {co} purchase back within {answer}.",
    "warranty": "Every {co} product carries a warranty of {answer}.",
    "shipping": "{co} delivers for free once an order reaches {answer}.",
    "price_match": "{co} refunds a lower price found within {answer} of purchase.",
    "student": "Students pay {answer} less at {co}.",
    "parental": "Staff of {co} receive {answer} of paid parental leave.",
    "support": "The support team of {co} answers within {answer}.",
    "trade_in": "Handing in an old device at {co} earns a {answer} discount.",
    "price": "The {product} from {co} sells for {answer}.",
    "launch": "{co} brought the {product} to market in {answer}.",
    "category": "The {product} made by {co} is a {answer}.",
    "codename": "During development the {product} went by the name {answer}.",
}


def fact_id(fact: Fact) -> str:
    """A stable id of one fact (its passage id in the fact sheet): company, kind and the slot that tells
    facts of one kind apart (the role, the co-founder, the product)."""
    which = fact.slots.get("role") or fact.slots.get("founder") or fact.slots.get("product") or ""
    return f"{fact.slots['short']}:{fact.kind}" + (f":{which}" if which else "")


def fact_sheet(seed: int = 0, distractors: int = 3) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """The facts of the company of `seed` as passages (id, title, text), one sentence each, plus every fact
    of `distractors` other generated companies (so retrieval must find the right company, not any answer of
    the right shape); and the gold passage id of each held-out question of `build_company(seed)`."""
    passages, names, offset = [], set(), 0
    while len(names) < distractors + 1:
        facts = company_facts(random.Random(seed + 1000 * offset))
        offset += 1
        if facts[0].slots["short"] in names:  # two seeds drew the same invented name: not a distinct company
            continue
        names.add(facts[0].slots["short"])
        for fact in facts:
            text = _POSSESSIVE.sub("s'", SENTENCES[fact.kind].format(**fact.slots, answer=fact.answer))
            passages.append((fact_id(fact), fact.slots["co"], text[0].upper() + text[1:]))
    gold = {}
    for fact in company_facts(random.Random(seed)):
        for template in PHRASINGS[fact.kind][1]:
            gold[_example(template, fact).prompt[0]["content"]] = fact_id(fact)
    return passages, gold
