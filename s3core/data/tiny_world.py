"""The tiny world: a seeded generator of a small synthetic encyclopedia and questions about it.

This is the project's embedded default dataset (DESIGN.md section 4): with no downloads, the whole pipeline
(index, naive RAG, RL training, evaluation) runs on it on a laptop. The world holds countries, cities,
people, organisations and works (novels, poetry collections, films, albums) with attributes and relations,
several encyclopedia-style passages per entity in the wiki-18 corpus format, and single-hop, two-hop and
comparison questions in the FlashRAG QA format.

Names are built from syllables. Most are unique, but a share of entities (``distractor_rate``) borrow a name
part from another entity on purpose: two people share a surname, an organisation carries a city's name, a
film's title reuses a word from another title. Lexical retrieval therefore has look-alikes to get past.

How answerability is guaranteed:
- every fact (an attribute or a relation) is stated in one "fact passage" of its entity, and the generator
  records which (``TinyWorld.fact_passages``); a question's ``supporting_ids`` are those fact passages, so
  the gold answer is in them by construction (the tests check every question). Extra passages may state a
  relation again from the other side ("Notable people born in Korvath include ...");
- every passage names its own entity, and passages name related entities in full, which is what makes a
  hop from one entity to the next possible;
- a two-hop question is kept only if no passage that names the question's entity also contains the final
  answer, so the first-hop passage alone never answers it; a comparison is kept only if no passage names
  both compared entities and their values differ. Both questions therefore need two different passages.

How it differs from real multi-hop sets (HotpotQA, 2Wiki): one template grammar, one fact per sentence and
no world knowledge outside the corpus, so a model can only answer from retrieved text.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import string
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from s3core.config.tiny_world import (  # the config lives apart from the generator
    COMPARISON_KINDS,
    ENTITY_KINDS,
    SINGLE_HOP_FACTS,
    TWO_HOP_CHAINS,
    TinyWorldConfig,
    question_counts,
)

MIN_WORDS, MAX_WORDS = 40, 120  # passage length bounds
TARGET_WORDS = (48, 85)  # fillers are added until a random target in this range is reached
MAX_LISTED_NAMES = 4  # names listed in one "notable people" style sentence
N_CONTINENTS = 3

# -- name syllables ----------------------------------------------------------------------------------------
ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "kr", "tr", "st", "th", "gr", "sh", "l", "r", "n", "m", "v", "t")
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "a", "i", "ai", "ei")
CODAS = ("", "", "", "n", "r", "l", "s", "th", "m", "k", "nd", "rn", "x")
LANGUAGE_SUFFIXES = ("ic", "ese", "ish", "i")

# -- world vocabulary ------------------------------------------------------------------------------------
# occupation -> (industry of a fitting employer, kind of work created, or None)
OCCUPATIONS = {
    "novelist": ("publishing", "novel"),
    "poet": ("publishing", "poetry collection"),
    "film director": ("film", "film"),
    "screenwriter": ("film", "film"),
    "composer": ("music", "album"),
    "singer": ("music", "album"),
    "engineer": ("engineering", None),
    "architect": ("engineering", None),
    "physician": ("pharmaceuticals", None),
    "chemist": ("pharmaceuticals", None),
    "banker": ("banking", None),
    "lawyer": ("banking", None),
    "geologist": ("mining", None),
    "ship captain": ("shipping", None),
    "textile designer": ("textiles", None),
}
# industry -> name suffixes (none repeats the industry word, so a name does not give its industry away)
INDUSTRY_SUFFIXES = {
    "publishing": ("Press", "Books", "House"),
    "film": ("Pictures", "Studios"),
    "music": ("Records", "Recordings"),
    "engineering": ("Works", "Foundry", "Ironworks"),
    "pharmaceuticals": ("Laboratories", "Remedies"),
    "banking": ("Trust", "Savings", "Exchange"),
    "mining": ("Collieries", "Quarries", "Ore Company"),
    "shipping": ("Lines", "Navigation", "Freight"),
    "textiles": ("Mills", "Weavers"),
}
GENRES = {
    "novel": ("mystery", "romance", "adventure", "satire", "historical"),
    "poetry collection": ("pastoral", "elegiac", "devotional"),
    "film": ("thriller", "comedy", "western", "drama", "documentary"),
    "album": ("jazz", "folk", "blues", "choral", "ambient"),
}
TITLE_PATTERNS = ("The {w} Letters", "Songs of {w}", "{w}", "The Road to {w}", "Night in {w}", "The {w} Affair",
                  "{w} Rising", "Winter at {w}", "The Last {w}", "Return to {w}", "The {w} Variations",
                  "Lights over {w}", "The Gardens of {w}", "{w} Station")

# -- fact sentences, one template list per (kind, section); works vary by family -----------------------
FACT_SENTENCES = {
    ("person", "intro"): (
        "{name} was {occupation_a} and a citizen of {nationality}.",
        "{name} was {occupation_a} who held the citizenship of {nationality}.",
        "A citizen of {nationality}, {name} worked as {occupation_a}.",
    ),
    ("person", "early_life"): (
        "{name} was born in {birth_city} in {birth_year}.",
        "Born in {birth_year} in the city of {birth_city}, {name} grew up in a modest household.",
        "{name} was born in the year {birth_year} in {birth_city}.",
    ),
    ("person", "career"): (
        "For most of {his} career {name} worked for {employer}.",
        "{name} was employed by {employer} for many years.",
        "{name} spent the greater part of {his} working life at {employer}.",
    ),
    ("city", "intro"): (
        "{name} is a city in {country}.",
        "{name} is a city located in {country}.",
        "The city of {name} lies in {country}.",
    ),
    ("city", "history"): (
        "{name} was founded in {founding_year}.",
        "The settlement that became {name} was founded in {founding_year}.",
        "Records date the founding of {name} to {founding_year}.",
    ),
    ("city", "demographics"): (
        "{name} has a population of {population}.",
        "At the most recent census {name} had {population} inhabitants.",
        "The population of {name} stands at {population}.",
    ),
    ("country", "intro"): (
        "{name} is a country on the continent of {continent}.",
        "{name} is a sovereign state in {continent}.",
    ),
    ("country", "history"): (
        "The state of {name} was established in {founding_year}.",
        "{name} was founded as an independent state in {founding_year}.",
    ),
    ("country", "government"): (
        "The capital of {name} is {capital}, and its official language is {language}.",
        "{name} is governed from its capital, {capital}; the official language is {language}.",
    ),
    ("organisation", "intro"): (
        "{name} is a company in the {industry} industry.",
        "{name} is an organisation active in {industry}.",
        "{name} is a business that operates in {industry}.",
    ),
    ("organisation", "history"): (
        "{name} was founded in {founding_year} by {founder}.",
        "{founder} established {name} in {founding_year}.",
        "{name} was set up by {founder} in {founding_year}.",
    ),
    ("organisation", "headquarters"): (
        "{name} has its headquarters in {headquarters}.",
        "The head office of {name} is in {headquarters}.",
        "{name} is headquartered in {headquarters}.",
    ),
}
WORK_FACT_SENTENCES = {
    ("book", "intro"): ("{name} is {genre_a} {work_type} set in {location}.",
                        "Set in {location}, {name} is {genre_a} {work_type}."),
    ("film", "intro"): ("{name} is {genre_a} film set in {location}.",
                        "Set in {location}, {name} is {genre_a} film."),
    ("album", "intro"): ("{name} is {genre_a} album recorded in {location}.",
                         "Recorded in {location}, {name} is {genre_a} album."),
    ("book", "creation"): ("{name} was written by {creator}.", "{creator} wrote {name}."),
    ("film", "creation"): ("{name} was directed by {creator}.", "{creator} directed {name}."),
    ("album", "creation"): ("{name} was recorded by {creator}.", "{creator} recorded {name}."),
    ("book", "release"): ("{name} was first published in {year}.", "{name} appeared in print in {year}."),
    ("film", "release"): ("{name} was released in {year}.", "{name} premiered in {year}."),
    ("album", "release"): ("{name} was released in {year}.", "{name} was issued in {year}."),
}
# the facts each fact section states, in passage order
FACT_SECTIONS = {
    "person": (("intro", ("occupation", "nationality")), ("early_life", ("birth_year", "birth_city")),
               ("career", ("employer",))),
    "city": (("intro", ("country",)), ("history", ("founding_year",)), ("demographics", ("population",))),
    "country": (("intro", ("continent",)), ("history", ("founding_year",)),
                ("government", ("capital", "language"))),
    "organisation": (("intro", ("industry",)), ("history", ("founding_year", "founder")),
                     ("headquarters", ("headquarters",))),
    "work": (("intro", ("genre", "location")), ("creation", ("creator",)), ("release", ("year",))),
}
# extra sections: (name, relations whose sources it lists, sentence templates listing them)
EXTRA_SECTIONS = {
    "person": (("works", (("creator", "Works attributed to {name} include {names}."),
                          ("founder", "{name} founded {names}."))),
               ("personal_life", ()), ("legacy", ())),
    "city": (("notable", (("birth_city", "Notable people born in {name} include {names}."),
                          ("headquarters", "{name} is home to the head offices of {names}."))),
             ("culture", (("location", "Works set or recorded in {name} include {names}."),)),
             ("geography", ())),
    "country": (("cities", (("country", "Other cities of {name} include {names}."),)),
                ("citizens", (("nationality", "Well-known citizens of {name} include {names}."),)),
                ("economy", ())),
    "organisation": (("people", (("employer", "Notable people who worked for {name} include {names}."),)),
                     ("operations", ()), ("reputation", ())),
    "work": (("reception", ()), ("legacy", ()), ("adaptations", ())),
}
# filler sentences carry no facts, no digits and no answer words; "lead" fillers name the entity
FILLERS = {
    ("person", "lead"): (
        "{name} is remembered for more than {his} professional achievements.",
        "Later generations have revisited the life of {name} in various ways.",
        "The private world of {name} is known mostly through letters.",
    ),
    ("person", "intro"): (
        "{He} is frequently cited in surveys of {his} profession.",
        "Contemporaries described {him} as patient, exacting and generous with younger colleagues.",
        "Much of what is known about {him} comes from letters preserved by friends.",
        "{His} name appears in several regional biographical dictionaries.",
        "Historians still debate how much of {his} reputation rests on later retellings.",
        "{He} preferred to work away from public attention.",
        "Portraits of {him} show a serious face and a plain style of dress.",
    ),
    ("person", "early_life"): (
        "{His} family kept a small household near the old market.",
        "As a child {he} was known for reading late into the night.",
        "{He} attended local schools before leaving home as a young adult.",
        "Relatives later recalled a quiet and observant youth.",
        "Few records of {his} early schooling have survived.",
        "{His} parents encouraged a habit of careful observation.",
        "{He} spent long summers with relatives in the countryside.",
    ),
    ("person", "career"): (
        "Colleagues remembered {him} as a careful and demanding worker.",
        "{He} rose steadily through the ranks over the following years.",
        "{His} time there shaped much of {his} later thinking.",
        "Several of {his} projects from this period are still discussed.",
        "{He} was known for long working hours and meticulous notes.",
        "{He} often travelled on behalf of {his} employer.",
        "Younger staff sought {his} advice on difficult problems.",
    ),
    ("person", "works"): (
        "{His} output was uneven but often ambitious.",
        "Critics have returned to {his} work repeatedly.",
        "{He} revised {his} projects many times before releasing them.",
        "Some of {his} drafts were lost in a house move.",
        "{He} rarely explained {his} intentions in interviews.",
        "Admirers praise the clarity and economy of {his} style.",
    ),
    ("person", "personal_life"): (
        "{He} corresponded widely with friends abroad.",
        "{He} rarely spoke in public about {his} family.",
        "{He} kept a large personal library.",
        "Friends described {his} home as open to visitors at all hours.",
        "{He} was a keen walker and an enthusiastic gardener.",
        "In later life {he} took up painting watercolours as a hobby.",
    ),
    ("person", "legacy"): (
        "An annual lecture is given in {his} honour.",
        "{His} papers are held in a private archive.",
        "Critics disagree about the lasting value of {his} contributions.",
        "A street in {his} home district bears {his} name.",
        "Several biographies have examined {his} life and influence.",
        "Students still read accounts of {his} methods.",
    ),
    ("city", "lead"): (
        "{name} is also known for its seasonal festivals.",
        "Travellers often describe {name} as a quiet and orderly place.",
        "The character of {name} has changed slowly over the centuries.",
    ),
    ("city", "intro"): (
        "The city lies along a slow river crossed by several old bridges.",
        "Its centre is known for narrow streets and stone houses.",
        "Visitors often arrive by the regional railway.",
        "The surrounding countryside is mostly farmland and low hills.",
        "A large public park occupies the former castle grounds.",
        "The city is the seat of a regional court.",
    ),
    ("city", "history"): (
        "The town grew slowly around a market and a river crossing.",
        "Its old walls were demolished during a later expansion.",
        "A great fire destroyed part of the old quarter in its early centuries.",
        "The city changed hands several times during regional conflicts.",
        "Merchants from distant ports helped it prosper.",
        "Its oldest church still stands near the main square.",
    ),
    ("city", "demographics"): (
        "Most residents live in the districts north of the river.",
        "The population grew rapidly during the industrial era.",
        "The city has a large student population.",
        "Several dialects are heard in its markets.",
        "Many families moved to its outer suburbs in recent decades.",
        "Its residents are known for a strong local identity.",
    ),
    ("city", "notable"): (
        "Local museums keep records of famous residents.",
        "Plaques mark several historic houses in the old town.",
        "The city council sponsors prizes in the name of its residents.",
        "Its archives hold many private letters and ledgers.",
        "Civic pride in its famous names is widespread.",
    ),
    ("city", "culture"): (
        "The city appears often in stories and songs.",
        "Its theatres and halls attract audiences from the whole region.",
        "Local bookshops keep shelves devoted to the city.",
        "Painters have long been drawn to its light and rooftops.",
        "A yearly parade fills the main avenue each spring.",
    ),
    ("city", "geography"): (
        "The climate is mild, with wet winters and warm summers.",
        "Hills shelter the city from the strongest winds.",
        "A chain of lakes lies a short distance to the east.",
        "The river floods the lower districts in some years.",
        "Forests cover much of the land to the south.",
    ),
    ("country", "lead"): (
        "{name} has a long and varied history.",
        "Visitors to {name} often remark on its landscapes.",
        "The economy of {name} rests on trade, farming and services.",
    ),
    ("country", "intro"): (
        "Its landscape ranges from coastal plains to high plateaus.",
        "The country is divided into several provinces.",
        "Mountain ranges form much of its northern border.",
        "Its coastline is dotted with small harbours.",
        "The interior is dry and thinly settled.",
        "Rivers from the highlands water its central valleys.",
    ),
    ("country", "history"): (
        "Its borders were redrawn several times in the following centuries.",
        "A long period of peace followed its founding.",
        "Early rulers built roads that still connect its provinces.",
        "The country survived several disputes with its neighbours.",
        "Its first constitution was written by a small assembly.",
        "Historians divide its past into distinct periods.",
    ),
    ("country", "government"): (
        "The national parliament meets in the capital.",
        "The country is governed as a parliamentary republic.",
        "Regional councils hold considerable local power.",
        "Elections are held at regular intervals.",
        "Its courts are known for their independence.",
        "A written constitution defines the powers of each office.",
    ),
    ("country", "cities"): (
        "Most of the population lives in towns and cities.",
        "Railways link its main urban centres.",
        "Smaller towns keep many old customs.",
        "Its cities differ widely in size and character.",
        "Urban growth accelerated in the last century.",
    ),
    ("country", "citizens"): (
        "Many of its citizens live and work abroad.",
        "The country honours notable citizens with a national order.",
        "Its people are known for their hospitality.",
        "Public life has produced many well-known figures.",
        "National newspapers profile distinguished citizens each year.",
    ),
    ("country", "economy"): (
        "Farming remains important in the rural provinces.",
        "Its exports include timber, grain and machinery.",
        "Tourism has grown steadily in recent years.",
        "The national currency is managed by an independent authority.",
        "Small family firms employ much of its workforce.",
    ),
    ("organisation", "lead"): (
        "{name} has been praised and criticised in equal measure.",
        "{name} runs several branch offices.",
        "The affairs of {name} are followed closely by the press.",
    ),
    ("organisation", "intro"): (
        "The company has a reputation for conservative management.",
        "It employs staff in several cities.",
        "Its emblem is a simple geometric mark.",
        "It is privately owned by a group of partners.",
        "The firm is known for training its own apprentices.",
        "Its annual reports are noted for their plain language.",
    ),
    ("organisation", "history"): (
        "Its first years were marked by financial difficulty.",
        "The firm expanded steadily after a series of early successes.",
        "Its original premises were a modest rented building.",
        "A period of reorganisation followed a change of ownership.",
        "It survived several economic crises.",
        "Early partners invested most of their savings in the venture.",
    ),
    ("organisation", "headquarters"): (
        "The head office occupies a large building near the city centre.",
        "Most of its administrative staff work at the main site.",
        "The building was extended twice to make room for new departments.",
        "Visitors can tour parts of the main office on open days.",
        "Its archive is kept in the basement of the main office.",
    ),
    ("organisation", "people"): (
        "It has attracted many capable employees over the years.",
        "Former staff have gone on to found firms of their own.",
        "It is known for promoting from within.",
        "Its staff association organises regular social events.",
        "Working conditions there were considered good for the period.",
    ),
    ("organisation", "operations"): (
        "Its operations are organised into several divisions.",
        "It relies on a network of suppliers across the region.",
        "Modern methods were adopted gradually.",
        "It keeps a small research department.",
        "Its products are sold in several countries.",
    ),
    ("organisation", "reputation"): (
        "Observers describe it as cautious but reliable.",
        "Its name is widely recognised in the region.",
        "Some commentators accuse it of resisting change.",
        "It has won several awards for good practice.",
        "Customers value its long record of service.",
    ),
    ("work", "lead"): (
        "Critics have offered differing views of {name}.",
        "{name} has been discussed in several retrospectives.",
        "{name} has influenced a number of later works.",
    ),
    ("work", "intro"): (
        "It is among the better known works of its kind.",
        "The work is noted for its unusual structure.",
        "Its opening is often quoted.",
        "It explores themes of memory, loss and return.",
        "The work is admired for its restraint.",
        "Its central figures are drawn with great care.",
    ),
    ("work", "creation"): (
        "The work took several years to complete.",
        "Early drafts differed considerably from the final version.",
        "Much of it was made during a period of travel.",
        "Its creator abandoned it twice before finishing.",
        "Friends reportedly helped shape its final form.",
        "Its working title was changed shortly before completion.",
    ),
    ("work", "release"): (
        "It sold modestly at first but found a wider audience later.",
        "It was later reissued in a revised form.",
        "Its first appearance drew little attention.",
        "Word of mouth slowly built its reputation.",
        "Early reviews were cautious.",
        "It has remained available ever since.",
    ),
    ("work", "reception"): (
        "Some reviewers found it too slow and too long for its subject.",
        "Others praised its atmosphere and its close attention to detail.",
        "It divided audiences on first release, and the debate has never quite settled.",
        "Its reputation has grown over time as new readers and viewers discovered it.",
        "It is taught in some university courses on the art of its period.",
        "A few critics changed their minds about it after a second look.",
    ),
    ("work", "legacy"): (
        "Later artists have cited it as an important early influence.",
        "It is often included in lists of the notable works of its decade.",
        "Some of its phrases have entered everyday speech in a few regions.",
        "It continues to find new admirers among younger audiences.",
        "Scholars still debate its meaning and the intentions behind it.",
        "Its influence can be traced in the work of several imitators.",
    ),
    ("work", "adaptations"): (
        "It has been adapted for the stage on more than one occasion.",
        "A radio version was broadcast some years after its first appearance.",
        "Several affectionate parodies of it exist, most of them short.",
        "An illustrated edition was prepared by a circle of admirers.",
        "Plans for further adaptations have been announced and then abandoned.",
        "Translations have carried it well beyond its original audience.",
    ),
}

# -- questions -------------------------------------------------------------------------------------------
# single-hop question templates per (kind, fact); {s} is the subject, a name or (two-hop) a noun phrase
FACT_QUESTIONS = {
    ("person", "birth_year"): ("In what year was {s} born?", "When was {s} born?"),
    ("person", "birth_city"): ("In which city was {s} born?", "Where was {s} born?"),
    ("person", "nationality"): ("Of which country was {s} a citizen?", "Which country was {s} a citizen of?"),
    ("person", "employer"): ("Which organisation did {s} work for?", "Who employed {s}?"),
    ("person", "occupation"): ("What was the occupation of {s}?", "What did {s} do for a living?"),
    ("city", "country"): ("In which country is {s}?", "In which country does {s} lie?"),
    ("city", "founding_year"): ("In what year was {s} founded?", "When was {s} founded?"),
    ("city", "population"): ("What is the population of {s}?", "How many people live in {s}?"),
    ("country", "continent"): ("On which continent is {s}?", "On which continent does {s} lie?"),
    ("country", "founding_year"): ("In what year was {s} established?", "When did {s} become a state?"),
    ("country", "capital"): ("What is the capital of {s}?", "Which city is the capital of {s}?"),
    ("country", "language"): ("What is the official language of {s}?", "Which language is official in {s}?"),
    ("organisation", "industry"): ("In which industry does {s} operate?", "What industry is {s} in?"),
    ("organisation", "founding_year"): ("In what year was {s} founded?", "When was {s} founded?"),
    ("organisation", "founder"): ("Who founded {s}?", "Who was the founder of {s}?"),
    ("organisation", "headquarters"): ("In which city is {s} headquartered?", "Where is {s} based?"),
}
WORK_QUESTIONS = {
    ("book", "creator"): ("Who wrote {s}?", "Who is the author of {s}?"),
    ("film", "creator"): ("Who directed {s}?", "Who was the director of {s}?"),
    ("album", "creator"): ("Who recorded {s}?", "Which musician recorded {s}?"),
    ("book", "year"): ("In what year was {s} first published?", "When was {s} published?"),
    ("film", "year"): ("In what year was {s} released?", "When did {s} premiere?"),
    ("album", "year"): ("In what year was {s} released?", "When was {s} issued?"),
    ("book", "genre"): ("What is the genre of {s}?", "What kind of {work_type} is {s}?"),
    ("film", "genre"): ("What is the genre of {s}?", "What kind of film is {s}?"),
    ("album", "genre"): ("What is the genre of {s}?", "What kind of album is {s}?"),
    ("book", "location"): ("In which city is {s} set?", "Where is {s} set?"),
    ("film", "location"): ("In which city is {s} set?", "Where is {s} set?"),
    ("album", "location"): ("In which city was {s} recorded?", "Where was {s} recorded?"),
}
# two-hop chains: (kind, relation) -> noun phrases for "the <bridge> of {e}" and the bridge facts asked
BRIDGE_PHRASES = {
    ("work", "creator"): {"book": ("the author of {e}",), "film": ("the director of {e}",),
                          "album": ("the musician who recorded {e}",)},
    ("work", "location"): {"book": ("the city where {e} is set",), "film": ("the city where {e} is set",),
                           "album": ("the city where {e} was recorded",)},
    ("person", "birth_city"): ("the city where {e} was born", "the birthplace of {e}"),
    ("person", "employer"): ("the employer of {e}", "the organisation that employed {e}"),
    ("person", "nationality"): ("the country of which {e} was a citizen",),
    ("organisation", "founder"): ("the founder of {e}", "the person who founded {e}"),
    ("organisation", "headquarters"): ("the city where {e} is headquartered",),
    ("city", "country"): ("the country in which {e} lies", "the country where {e} is located"),
    ("country", "capital"): ("the capital of {e}",),
}
CHAINS = {
    ("work", "creator"): ("birth_year", "birth_city", "nationality", "employer"),
    ("work", "location"): ("country", "founding_year", "population"),
    ("person", "birth_city"): ("country", "founding_year", "population"),
    ("person", "employer"): ("founder", "headquarters", "founding_year", "industry"),
    ("person", "nationality"): ("capital", "founding_year", "language", "continent"),
    ("organisation", "founder"): ("birth_year", "birth_city", "nationality", "employer"),
    ("organisation", "headquarters"): ("country", "founding_year", "population"),
    ("city", "country"): ("capital", "founding_year", "language", "continent"),
    ("country", "capital"): ("founding_year", "population"),
}
# comparisons: (kind, attribute) -> ((template, "min" or "max": which value wins), ...)
COMPARISONS = {
    ("person", "birth_year"): (("Who was born earlier, {a} or {b}?", "min"),
                               ("Who was born later, {a} or {b}?", "max"),
                               ("Which of {a} and {b} was born first?", "min")),
    ("organisation", "founding_year"): (("Which organisation was founded earlier, {a} or {b}?", "min"),
                                        ("Which was established more recently, {a} or {b}?", "max")),
    ("city", "founding_year"): (("Which city was founded first, {a} or {b}?", "min"),
                                ("Which city is older, {a} or {b}?", "min")),
    ("city", "population"): (("Which city has the larger population, {a} or {b}?", "max"),
                             ("Which city has fewer inhabitants, {a} or {b}?", "min")),
    ("work", "year"): (("Which came out first, {a} or {b}?", "min"),
                       ("Which is more recent, {a} or {b}?", "max")),
    ("country", "founding_year"): (("Which country was established first, {a} or {b}?", "min"),),
}
ARTICLES = frozenset({"a", "an", "the"})
PRONOUNS = {
    "female": {"he": "she", "He": "She", "his": "her", "His": "Her", "him": "her"},
    "male": {"he": "he", "He": "He", "his": "his", "His": "His", "him": "him"},
}




def check_capacity_tables() -> None:
    """The counts config/tiny_world.py keeps of these tables (for its capacity check) must match them."""
    facts = {kind: sum(len(f) for _, f in FACT_SECTIONS[kind]) for kind in ENTITY_KINDS}
    chains: dict[str, int] = {}
    for (kind, _), asked in CHAINS.items():
        chains[kind] = chains.get(kind, 0) + len(asked)
    comparisons = tuple(kind for kind, _ in COMPARISONS)
    if (facts, chains, comparisons) != (SINGLE_HOP_FACTS, TWO_HOP_CHAINS, COMPARISON_KINDS):
        raise RuntimeError(
            "the world's tables changed: update SINGLE_HOP_FACTS, TWO_HOP_CHAINS and COMPARISON_KINDS in "
            f"s3core/config/tiny_world.py to {facts}, {chains} and {comparisons}")


check_capacity_tables()


# ========================================================================================================
# data types
# ========================================================================================================
@dataclass
class Entity:
    """One thing in the world. attrs hold values (years, words); relations hold ids of other entities."""

    id: str
    kind: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    relations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str
    entity_id: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    golden_answers: list[str]
    split: str
    metadata: dict


@dataclass
class TinyWorld:
    config: TinyWorldConfig
    entities: list[Entity]
    passages: list[Passage]
    questions: list[Question]
    fact_passages: dict[str, dict[str, str]] = field(default_factory=dict)  # entity id -> fact -> passage id

    def entity(self, entity_id: str) -> Entity:
        return next(e for e in self.entities if e.id == entity_id)


# ========================================================================================================
# public entry points
# ========================================================================================================
def generate_world(cfg: TinyWorldConfig) -> TinyWorld:
    """Build the whole world from cfg; the same cfg always gives the same world."""
    entities = build_entities(cfg)
    passages, fact_passages = build_passages(entities, cfg)
    questions = build_questions(entities, passages, fact_passages, cfg)
    return TinyWorld(config=cfg, entities=entities, passages=passages, questions=questions,
                     fact_passages=fact_passages)


def write_world(world: TinyWorld, out_dir: pathlib.Path) -> dict[str, int]:
    """Write corpus.jsonl (wiki-18 format), one FlashRAG QA file per split and entities.jsonl.

    Each file is written under a temporary name in out_dir and renamed when complete.
    Returns the row counts: {"passages": n, "entities": n, "train": n, ...}.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"passages": _write_jsonl(out_dir / "corpus.jsonl", map(corpus_record, world.passages))}
    for split in world.config.split_fractions:
        rows = [qa_record(q) for q in world.questions if q.split == split]
        counts[split] = _write_jsonl(out_dir / f"{split}.jsonl", rows)
    counts["entities"] = _write_jsonl(out_dir / "entities.jsonl", entity_records(world))
    return counts


def corpus_record(passage: Passage) -> dict[str, str]:
    return {"id": passage.id, "contents": f'"{passage.title}"\n{passage.text}'}


def qa_record(question: Question) -> dict[str, Any]:
    return {"id": question.id, "question": question.question, "golden_answers": list(question.golden_answers),
            "metadata": question.metadata}


def entity_records(world: TinyWorld) -> Iterator[dict[str, Any]]:
    passage_ids: dict[str, list[str]] = {}
    for passage in world.passages:
        passage_ids.setdefault(passage.entity_id, []).append(passage.id)
    for e in world.entities:
        yield {"id": e.id, "kind": e.kind, "name": e.name, "attrs": e.attrs, "relations": e.relations,
               "passage_ids": passage_ids.get(e.id, []), "fact_passages": world.fact_passages.get(e.id, {})}


def _write_jsonl(path: pathlib.Path, rows) -> int:
    n = 0
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False)
    try:
        with handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.replace(handle.name, path)
    except BaseException:
        pathlib.Path(handle.name).unlink(missing_ok=True)
        raise
    return n


# ========================================================================================================
# text normalisation (the DESIGN.md section 2 answer normalisation, without Unicode folding: names are ASCII)
# ========================================================================================================
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_tokens(text: str) -> list[str]:
    """Lowercase, drop punctuation and the articles a/an/the, split on whitespace."""
    return [t for t in text.lower().translate(_PUNCTUATION).split() if t not in ARTICLES]


class _TextIndex:
    """Which passages contain a phrase, as a contiguous run of normalised tokens."""

    def __init__(self, passages: Sequence[Passage]):
        self._texts = []
        self._by_token: dict[str, set[int]] = {}
        for i, passage in enumerate(passages):
            tokens = normalise_tokens(passage.text)
            self._texts.append(" " + " ".join(tokens) + " ")
            for token in tokens:
                self._by_token.setdefault(token, set()).add(i)

    def passages_with(self, phrase: str) -> set[int]:
        tokens = normalise_tokens(phrase)
        if not tokens:
            return set()
        candidates = set.intersection(*(self._by_token.get(t, set()) for t in tokens))
        needle = " " + " ".join(tokens) + " "
        return {i for i in candidates if needle in self._texts[i]}


# ========================================================================================================
# entities
# ========================================================================================================
class _NameMaker:
    """Pronounceable words from syllables, each used once unless a caller reuses one on purpose.

    ``taken`` holds the full names given out so far (all kinds), so that no two entities share one.
    """

    def __init__(self, rng: random.Random, banned: set[str]):
        self._rng = rng
        self._used = set(banned)
        self.taken: set[str] = set()

    def word(self, min_syllables: int = 2, max_syllables: int = 2) -> str:
        while True:
            n = self._rng.randint(min_syllables, max_syllables)
            parts = [self._rng.choice(ONSETS) + self._rng.choice(VOWELS) for _ in range(n)]
            candidate = ("".join(parts) + self._rng.choice(CODAS)).capitalize()
            if 4 <= len(candidate) <= 10 and candidate.lower() not in self._used:
                self._used.add(candidate.lower())
                return candidate

    def reserve(self, word: str) -> bool:
        """Claim a derived word (e.g. a language name); False if it is taken."""
        if word.lower() in self._used:
            return False
        self._used.add(word.lower())
        return True

    def claim_first_free(self, options: list[str]) -> str | None:
        """Claim the first full name of options, in random order, that no entity has yet."""
        options = list(options)
        self._rng.shuffle(options)
        for option in options:
            if option not in self.taken:
                self.taken.add(option)
                return option
        return None


def build_entities(cfg: TinyWorldConfig) -> list[Entity]:
    """Countries, cities, people, organisations and works, in that order, with consistent dates."""
    rng = random.Random(f"tiny-world/{cfg.seed}/entities")
    names = _NameMaker(rng, _template_vocabulary())
    continents = [names.word(2, 3) for _ in range(N_CONTINENTS)]
    countries = _make_countries(cfg, rng, names, continents)
    cities = _make_cities(cfg, rng, names, countries)
    people = _make_people(cfg, rng, names, cities, countries)
    organisations = _make_organisations(cfg, rng, names, cities, people)
    _assign_employers(rng, people, organisations)
    works = _make_works(cfg, rng, names, cities, people)
    return countries + cities + people + organisations + works


def _template_vocabulary() -> set[str]:
    """Every word of the sentence templates, so that no generated name reads as a template word."""
    words: set[str] = set()
    tables = (FACT_SENTENCES, WORK_FACT_SENTENCES, EXTRA_SECTIONS, FILLERS, FACT_QUESTIONS, WORK_QUESTIONS,
              BRIDGE_PHRASES, COMPARISONS, OCCUPATIONS, INDUSTRY_SUFFIXES, GENRES, TITLE_PATTERNS)
    for text in _strings_in(tables):
        words.update(normalise_tokens(text.replace("{", " ").replace("}", " ")))
    return words


def _strings_in(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings_in(key)
            yield from _strings_in(value)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _strings_in(item)


def _make_countries(cfg, rng, names: _NameMaker, continents: list[str]) -> list[Entity]:
    countries = []
    for i in range(cfg.n_countries):
        name = _derived_word(rng, names, ("", "", "ia", "a"))
        names.claim_first_free([name])
        language = _derived_word(rng, names, LANGUAGE_SUFFIXES)
        countries.append(Entity(
            id=f"country_{i}", kind="country", name=name,
            attrs={"continent": rng.choice(continents), "founding_year": rng.randint(1400, 1950),
                   "language": language},
        ))
    return countries


def _derived_word(rng, names: _NameMaker, suffixes: Sequence[str]) -> str:
    """A fresh word with one of suffixes appended (a country or language name), itself never reused."""
    while True:
        word, suffix = names.word(2, 2), rng.choice(suffixes)
        if not suffix:
            return word  # a fresh word is reserved already
        if word[-1] in "aeiou" and suffix[0] in "aeiou":
            word = word[:-1]  # Korva + ia -> Korvia
        if names.reserve(word + suffix):
            return word + suffix


def _make_cities(cfg, rng, names: _NameMaker, countries: list[Entity]) -> list[Entity]:
    cities = []
    for i in range(cfg.n_cities):
        country = countries[i] if i < len(countries) else rng.choice(countries)  # every country gets a city
        cities.append(Entity(
            id=f"city_{i}", kind="city", name=names.claim_first_free([names.word(2, 3)]),
            attrs={"founding_year": rng.randint(700, 1850), "population": _population(rng)},
            relations={"country": country.id},
        ))
    for country in countries:
        own = [c for c in cities if c.relations["country"] == country.id]
        country.relations["capital"] = rng.choice(own).id
    return cities


def _population(rng) -> int:
    value = math.exp(rng.uniform(math.log(3_000), math.log(3_000_000)))
    digits = int(math.floor(math.log10(value)))
    return int(round(value, 2 - digits))  # three significant figures, e.g. 48200


def _make_people(cfg, rng, names: _NameMaker, cities: list[Entity], countries: list[Entity]) -> list[Entity]:
    people: list[Entity] = []
    occupations = list(OCCUPATIONS)
    for i in range(cfg.n_people):
        birth_city = rng.choice(cities)
        nationality = birth_city.relations["country"] if rng.random() < 0.75 else rng.choice(countries).id
        occupation = "novelist" if i == 0 else rng.choice(occupations)  # at least one creator of works
        people.append(Entity(
            id=f"person_{i}", kind="person", name=_person_name(cfg, rng, names, people, cities),
            attrs={"birth_year": rng.randint(1800, 1960), "occupation": occupation,
                   "gender": rng.choice(("female", "male"))},
            relations={"birth_city": birth_city.id, "nationality": nationality},
        ))
    return people


def _person_name(cfg, rng, names: _NameMaker, people, cities) -> str:
    while True:
        first, surname = names.word(2, 2), names.word(2, 3)
        if people and rng.random() < cfg.distractor_rate:
            other = rng.choice(people).name.split()
            roll = rng.random()
            if roll < 0.6:
                surname = other[-1]  # a relative, or a namesake
            elif roll < 0.8:
                first = other[0]
            else:
                surname = rng.choice(cities).name  # a family named like a city
        claimed = names.claim_first_free([f"{first} {surname}"])
        if claimed is not None:
            return claimed


def _make_organisations(cfg, rng, names: _NameMaker, cities, people) -> list[Entity]:
    industries = list(INDUSTRY_SUFFIXES)
    rng.shuffle(industries)
    organisations: list[Entity] = []
    for i in range(cfg.n_organisations):
        industry = industries[i % len(industries)]  # every industry exists once there are enough firms
        founder = _pick_founder(rng, people, industry)
        headquarters = rng.choice(cities)
        base = _organisation_base(cfg, rng, names, organisations, cities, headquarters)
        name = names.claim_first_free([f"{base} {suffix}" for suffix in INDUSTRY_SUFFIXES[industry]])
        while name is None:  # every suffix taken with this base: use a fresh word
            name = names.claim_first_free([f"{names.word(2, 3)} {rng.choice(INDUSTRY_SUFFIXES[industry])}"])
        organisations.append(Entity(
            id=f"organisation_{i}", kind="organisation", name=name,
            attrs={"founding_year": founder.attrs["birth_year"] + rng.randint(22, 50), "industry": industry},
            relations={"founder": founder.id, "headquarters": headquarters.id},
        ))
    return organisations


def _pick_founder(rng, people: list[Entity], industry: str) -> Entity:
    fitting = [p for p in people if OCCUPATIONS[p.attrs["occupation"]][0] == industry]
    return rng.choice(fitting if fitting and rng.random() < 0.7 else people)


def _organisation_base(cfg, rng, names: _NameMaker, organisations, cities, headquarters: Entity) -> str:
    if rng.random() < cfg.distractor_rate:
        others = [c for c in cities if c.id != headquarters.id]  # a city's name, but not where it is based
        if organisations and (rng.random() < 0.5 or not others):
            return rng.choice(organisations).name.split()[0]
        if others:
            return rng.choice(others).name
    return names.word(2, 3)


def _assign_employers(rng, people: list[Entity], organisations: list[Entity]) -> None:
    """Each person works for a firm of a fitting industry that existed by their mid-thirties if one does."""
    for person in people:
        industry = OCCUPATIONS[person.attrs["occupation"]][0]
        fitting = [o for o in organisations if o.attrs["industry"] == industry] or organisations
        existing = [o for o in fitting if o.attrs["founding_year"] <= person.attrs["birth_year"] + 35]
        person.relations["employer"] = rng.choice(existing or fitting).id


def _make_works(cfg, rng, names: _NameMaker, cities, people) -> list[Entity]:
    creators = [p for p in people if OCCUPATIONS[p.attrs["occupation"]][1] is not None]
    works: list[Entity] = []
    title_words: list[str] = []
    for i in range(cfg.n_works):
        creator = rng.choice(creators)
        work_type = OCCUPATIONS[creator.attrs["occupation"]][1]
        word = _title_word(cfg, rng, names, title_words, cities)
        title = names.claim_first_free([p.format(w=word) for p in TITLE_PATTERNS])
        while title is None:  # every pattern taken with this word: use a fresh word
            word = names.word(2, 3)
            title = names.claim_first_free([p.format(w=word) for p in TITLE_PATTERNS])
        title_words.append(word)
        works.append(Entity(
            id=f"work_{i}", kind="work", name=title,
            attrs={"work_type": work_type, "genre": rng.choice(GENRES[work_type]),
                   "year": creator.attrs["birth_year"] + rng.randint(20, 60)},
            relations={"creator": creator.id, "location": rng.choice(cities).id},
        ))
    return works


def _title_word(cfg, rng, names: _NameMaker, title_words: list[str], cities) -> str:
    if rng.random() < cfg.distractor_rate:
        return rng.choice(title_words) if title_words and rng.random() < 0.5 else rng.choice(cities).name
    return names.word(2, 3)


# ========================================================================================================
# passages
# ========================================================================================================
@dataclass(frozen=True)
class _Section:
    name: str
    facts: tuple[str, ...]
    lead: tuple[str, ...]  # sentences already filled in; the first names the entity


def build_passages(entities: list[Entity], cfg: TinyWorldConfig) -> tuple[list[Passage], dict[str, dict[str, str]]]:
    """passages_per_entity passages per entity, ids "0", "1", ... in entity order, and each fact's passage."""
    rng = random.Random(f"tiny-world/{cfg.seed}/passages")
    by_id = {e.id: e for e in entities}
    sources = _relation_sources(entities)
    passages: list[Passage] = []
    fact_passages: dict[str, dict[str, str]] = {}
    for entity in entities:
        slots = _slots(entity, by_id)
        sections = _fact_sections(entity, slots, rng) + _extra_sections(entity, slots, sources, by_id, rng)
        for section in sections[: cfg.passages_per_entity]:
            passage = Passage(id=str(len(passages)), title=entity.name, entity_id=entity.id,
                              text=_assemble_text(entity, section, slots, rng))
            passages.append(passage)
            for fact in section.facts:
                fact_passages.setdefault(entity.id, {})[fact] = passage.id
    return passages, fact_passages


def _relation_sources(entities: list[Entity]) -> dict[tuple[str, str], list[str]]:
    """(target id, relation) -> ids of the entities whose relation points at the target."""
    sources: dict[tuple[str, str], list[str]] = {}
    for e in entities:
        for relation, target in e.relations.items():
            sources.setdefault((target, relation), []).append(e.id)
    return sources


def _slots(entity: Entity, by_id: dict[str, Entity]) -> dict[str, Any]:
    """Values that fill an entity's templates: name, pronouns, attributes, related names, a/an forms."""
    slots: dict[str, Any] = {"name": entity.name}
    slots.update(PRONOUNS.get(entity.attrs.get("gender", ""), {}))
    slots.update(entity.attrs)
    slots.update({relation: by_id[target].name for relation, target in entity.relations.items()})
    if "population" in slots:
        slots["population"] = f"{entity.attrs['population']:,}"
    if "occupation" in slots:
        slots["occupation_a"] = _with_article(entity.attrs["occupation"])
    if "genre" in slots:
        slots["genre_a"] = _with_article(entity.attrs["genre"])
    return slots


def _with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _work_family(entity: Entity) -> str:
    work_type = entity.attrs["work_type"]
    return "book" if work_type in ("novel", "poetry collection") else work_type


def _fact_sections(entity: Entity, slots: dict[str, Any], rng: random.Random) -> list[_Section]:
    sections = []
    for name, facts in FACT_SECTIONS[entity.kind]:
        if entity.kind == "work":
            templates = WORK_FACT_SENTENCES[(_work_family(entity), name)]
        else:
            templates = FACT_SENTENCES[(entity.kind, name)]
        sections.append(_Section(name, facts, (rng.choice(templates).format(**slots),)))
    return sections


def _extra_sections(entity, slots, sources, by_id, rng: random.Random) -> list[_Section]:
    sections = []
    for name, listings in EXTRA_SECTIONS[entity.kind]:
        lead = []
        for relation, template in listings:
            ids = [i for i in sources.get((entity.id, relation), []) if i != entity.relations.get("capital")]
            if ids:
                chosen = sorted(rng.sample(ids, min(MAX_LISTED_NAMES, len(ids))), key=ids.index)
                lead.append(template.format(name=entity.name, names=_join_names([by_id[i].name for i in chosen])))
        if not lead:
            lead.append(rng.choice(FILLERS[(entity.kind, "lead")]).format(**slots))
        sections.append(_Section(name, (), tuple(lead)))
    return sections


def _join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _assemble_text(entity: Entity, section: _Section, slots: dict[str, Any], rng: random.Random) -> str:
    """The section's lead sentences, with background sentences inserted until a random length is reached."""
    sentences = list(section.lead)
    words = sum(len(s.split()) for s in sentences)
    target = rng.randint(*TARGET_WORDS)
    pool = list(FILLERS[(entity.kind, section.name)])
    rng.shuffle(pool)
    pool += _fallback_fillers(entity.kind, section.name)  # only reached by a section short of words
    for template in pool:
        if words >= target:
            break
        sentence = template.format(**slots)
        if words + len(sentence.split()) > MAX_WORDS:
            continue
        sentences.insert(rng.randint(1, len(sentences)), sentence)
        words += len(sentence.split())
    return " ".join(sentences)


def _fallback_fillers(kind: str, section_name: str) -> list[str]:
    """Background sentences of the kind's other sections, in table order."""
    return [template for (k, name), templates in FILLERS.items() if k == kind and name not in (section_name, "lead")
            for template in templates]


# ========================================================================================================
# questions
# ========================================================================================================
@dataclass(frozen=True)
class _Answer:
    aliases: tuple[str, ...]  # the canonical form first
    entity_id: str | None  # set when the answer is an entity


@dataclass(frozen=True)
class _Draft:
    group: str  # questions are drawn evenly across groups (one per fact, chain or comparison)
    question: str
    answers: tuple[str, ...]
    metadata: dict


class _QuestionContext:
    """What question makers need: entities by id, fact passages, a text index and unambiguous name parts."""

    def __init__(self, entities, passages, fact_passages):
        self.entities = entities
        self.by_id = {e.id: e for e in entities}
        self.passages = passages
        self.fact_passages = fact_passages
        self.index = _TextIndex(passages)
        self.token_owners = _name_token_owners(entities)
        self._mentions: dict[str, set[int]] = {}

    def mentions(self, phrase: str) -> set[int]:
        """Indices of the passages that contain phrase (a name or an answer), cached."""
        if phrase not in self._mentions:
            self._mentions[phrase] = self.index.passages_with(phrase)
        return self._mentions[phrase]

    def answer(self, entity: Entity, fact: str) -> _Answer:
        if fact in entity.relations:
            target = self.by_id[entity.relations[fact]]
            return _Answer(self.aliases(target), target.id)
        value = entity.attrs[fact]
        if fact == "population":
            return _Answer((f"{value:,}", str(value)), None)
        return _Answer((str(value),), None)

    def aliases(self, entity: Entity) -> tuple[str, ...]:
        """The full name, plus a person's surname when no other entity's name contains that word."""
        if entity.kind == "person":
            surname = entity.name.split()[-1]
            if self.token_owners.get(surname.lower()) == {entity.id}:
                return (entity.name, surname)
        return (entity.name,)


def _name_token_owners(entities: list[Entity]) -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for e in entities:
        for token in normalise_tokens(e.name):
            owners.setdefault(token, set()).add(e.id)
    return owners


def build_questions(entities, passages, fact_passages, cfg: TinyWorldConfig) -> list[Question]:
    """n_questions questions in the configured mix, split per type by split_fractions."""
    rng = random.Random(f"tiny-world/{cfg.seed}/questions")
    ctx = _QuestionContext(entities, passages, fact_passages)
    makers = {"single_hop": _single_hop_drafts, "two_hop": _two_hop_drafts, "comparison": _comparison_drafts}
    chosen: dict[str, list[_Draft]] = {}
    for qtype, wanted in question_counts(cfg).items():
        chosen[qtype] = _pick_evenly(qtype, makers[qtype](ctx, rng, wanted), wanted, rng)
    return _assign_splits(chosen, cfg.split_fractions, rng)


def _single_hop_drafts(ctx: _QuestionContext, rng: random.Random, wanted: int) -> Iterator[_Draft]:
    """One draft per fact of every entity (a few thousand, so wanted is not needed to bound them)."""
    for entity in ctx.entities:
        for _, facts in FACT_SECTIONS[entity.kind]:
            for fact in facts:
                answer = ctx.answer(entity, fact)
                question = rng.choice(_question_templates(entity, fact)).format(s=entity.name, **_work_slots(entity))
                yield _Draft(
                    group=f"{entity.kind}.{fact}", question=question, answers=answer.aliases,
                    metadata=_metadata("single_hop", 1, f"{entity.kind}.{fact}",
                                       [entity.id] + _ids(answer.entity_id),
                                       [ctx.fact_passages[entity.id][fact]], None),
                )


def _question_templates(entity: Entity, fact: str) -> tuple[str, ...]:
    if entity.kind == "work":
        return WORK_QUESTIONS[(_work_family(entity), fact)]
    return FACT_QUESTIONS[(entity.kind, fact)]


def _work_slots(entity: Entity) -> dict[str, str]:
    return {"work_type": entity.attrs["work_type"]} if entity.kind == "work" else {}


def _two_hop_drafts(ctx: _QuestionContext, rng: random.Random, wanted: int) -> Iterator[_Draft]:
    """One draft per (entity, chain, bridge fact) that passes the one-passage check of _two_hop_draft."""
    for entity in ctx.entities:
        for (kind, relation), asked in CHAINS.items():
            if entity.kind != kind:
                continue
            bridge = ctx.by_id[entity.relations[relation]]
            for fact in asked:
                draft = _two_hop_draft(ctx, rng, entity, relation, bridge, fact)
                if draft is not None:
                    yield draft


def _two_hop_draft(ctx, rng, entity: Entity, relation: str, bridge: Entity, fact: str) -> _Draft | None:
    """A question about the bridge's fact, naming only the entity; None if one passage could answer it."""
    answer = ctx.answer(bridge, fact)
    if any(ctx.mentions(alias) & ctx.mentions(entity.name) for alias in answer.aliases):
        return None
    phrases = BRIDGE_PHRASES[(entity.kind, relation)]
    if isinstance(phrases, dict):
        phrases = phrases[_work_family(entity)]
    subject = rng.choice(phrases).format(e=entity.name)
    question = rng.choice(_question_templates(bridge, fact)).format(s=subject, **_work_slots(bridge))
    chain = f"{entity.kind}.{relation}>{bridge.kind}.{fact}"
    supporting = [ctx.fact_passages[entity.id][relation], ctx.fact_passages[bridge.id][fact]]
    return _Draft(group=chain, question=question, answers=answer.aliases,
                  metadata=_metadata("two_hop", 2, chain, [entity.id, bridge.id] + _ids(answer.entity_id),
                                     supporting, bridge.name))


def _comparison_drafts(ctx: _QuestionContext, rng: random.Random, wanted: int) -> Iterator[_Draft]:
    """Up to wanted drafts per compared attribute, from random distinct pairs (sampled, not enumerated:
    enumerating all pairs is quadratic and took minutes for a 100k-passage world)."""
    for (kind, attr), templates in COMPARISONS.items():
        members = [e for e in ctx.entities if e.kind == kind]
        if len(members) < 2:
            continue
        tried: set[tuple[int, int]] = set()
        made, budget = 0, 50 * wanted + 100
        while made < wanted and budget > 0 and len(tried) < len(members) * (len(members) - 1) // 2:
            budget -= 1
            i, j = sorted(rng.sample(range(len(members)), 2))
            if (i, j) in tried:
                continue
            tried.add((i, j))
            draft = _comparison_draft(ctx, rng, members[i], members[j], attr, templates)
            if draft is not None:
                made += 1
                yield draft


def _comparison_draft(ctx, rng, first: Entity, second: Entity, attr: str, templates) -> _Draft | None:
    """None when the values tie or one passage names both entities."""
    if first.attrs[attr] == second.attrs[attr] or ctx.mentions(first.name) & ctx.mentions(second.name):
        return None
    template, pick = rng.choice(templates)
    a, b = (first, second) if rng.random() < 0.5 else (second, first)
    winner = min(a, b, key=lambda e: e.attrs[attr]) if pick == "min" else max(a, b, key=lambda e: e.attrs[attr])
    relation = f"{first.kind}.{attr}:{pick}"
    supporting = [ctx.fact_passages[a.id][attr], ctx.fact_passages[b.id][attr]]
    return _Draft(group=f"{first.kind}.{attr}", question=template.format(a=a.name, b=b.name),
                  answers=ctx.aliases(winner),
                  metadata=_metadata("comparison", 2, relation, [a.id, b.id], supporting, None))


def _metadata(qtype: str, hops: int, relation: str, entities: list[str], supporting: list[str],
              bridge: str | None) -> dict[str, Any]:
    """entities[0] is the entity the question names (for comparisons, entities[:2] both are)."""
    return {"type": qtype, "hops": hops, "relation": relation, "entities": entities,
            "supporting_ids": supporting, "bridge": bridge}


def _ids(entity_id: str | None) -> list[str]:
    return [entity_id] if entity_id is not None else []


def _pick_evenly(qtype: str, drafts: Iterator[_Draft], wanted: int, rng: random.Random) -> list[_Draft]:
    """wanted drafts with distinct question texts, taken round-robin over groups so every relation shows up."""
    groups: dict[str, list[_Draft]] = {}
    for draft in drafts:
        groups.setdefault(draft.group, []).append(draft)
    queues = []
    for name in sorted(groups):
        queue = groups[name]
        rng.shuffle(queue)
        queues.append(queue)
    picked: list[_Draft] = []
    seen: set[str] = set()
    while len(picked) < wanted and any(queues):
        for queue in queues:
            if queue and len(picked) < wanted:
                draft = queue.pop()
                if draft.question not in seen:
                    seen.add(draft.question)
                    picked.append(draft)
    if len(picked) < wanted:
        raise ValueError(
            f"the world holds only {len(picked)} usable {qtype} questions but {wanted} were asked for: raise the "
            "entity counts (n_people, n_cities, n_organisations, n_works) or lower n_questions / question_mix"
        )
    return picked


def _assign_splits(chosen: dict[str, list[_Draft]], fractions: dict[str, float],
                   rng: random.Random) -> list[Question]:
    """Split each type by the fractions (so every split gets every type), then number each split's rows."""
    per_split: dict[str, list[tuple[str, _Draft]]] = {split: [] for split in fractions}
    for qtype, drafts in chosen.items():
        drafts = list(drafts)
        rng.shuffle(drafts)
        start, cumulative = 0, 0.0
        for split, share in fractions.items():
            cumulative += share
            end = round(cumulative * len(drafts)) if split != list(fractions)[-1] else len(drafts)
            per_split[split].extend((qtype, d) for d in drafts[start:end])
            start = end
    questions = []
    for split, rows in per_split.items():
        rng.shuffle(rows)
        for i, (_, draft) in enumerate(rows):
            questions.append(Question(id=f"{split}_{i}", question=draft.question, golden_answers=list(draft.answers),
                                      split=split, metadata=draft.metadata))
    return questions


def read_world_texts(world_dir: pathlib.Path) -> list[str]:
    """Every passage and question of the tiny world: the text the tiny tokenizers are trained on."""
    texts = []
    for name in ("corpus.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl"):
        with open(world_dir / name, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                texts.append(record.get("contents") or record.get("question", ""))
    return texts
