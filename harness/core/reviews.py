"""The built-in data set ``embedded:reviews``: synthetic, review-like binary sentiment.

The project generates this set itself, so a benchmark needs no download and the
data are the same on every machine.  Nothing is copied from any real corpus:
every text is assembled from the template grammar in this module.

How a row is built
------------------
Each row gets its own random stream, ``random.Random("reviews:<seed>:<row>")``
(string seeds are hashed with SHA-512 by the standard library, never with
``hash()``), so a frame is identical across processes and machines and the first
``k`` rows of ``generate(n, seed)`` do not depend on ``n``.

1. **Label.** The overall verdict is positive (label 1) with probability 0.6,
   roughly the balance of the lab's Amazon set.
2. **Domain.** One of five domains, each with its own vocabulary: products
   (blenders, routers, suitcases, ...), films, books, restaurants and hotels.
   A domain brings subject nouns, aspects ("the battery life", "the pacing",
   "the portions"), domain adjectives, concrete events ("it stopped working after
   nine days", "I finished it in two sittings"), neutral details, comparisons
   and audiences.
3. **Shape.** One of four review shapes (``SHAPE_CUTS``):

   * *one-liner* (12 %): a single 5-10 word line ("Really solid backpack,
     would buy again.", "Not bad at all, for the price.", "Wanted to love this
     hotel, but no.");
   * *straight* (79 %): 92-100 % of the opinionated body sentences agree with
     the verdict, and some of those are themselves tricky (negated, contrast,
     sarcasm, comparison);
   * *turn* (6 %): praise then complaint, or complaint then praise - the body
     leans against the verdict, then a connector ("That said,", "But",
     "Still,") turns to the side that decides the label, usually with a closing
     verdict sentence;
   * *balanced* (3 %): the body is a coin flip per sentence and only the
     verdict (mostly the last sentence) decides.

4. **Sentences.** Body sentences are drawn from several families, each
   combinatorial (subject x aspect x intensifier x adjective x tail):
   plain aspect opinions, negated opinions that carry the *opposite* adjective
   ("the acting wasn't bad at all", "the food was far from great"), double
   constructions ("I have nothing bad to say about ..."), concrete events,
   plainly emotional lines ("I'm thrilled with this kettle."), comparisons,
   in-sentence contrasts ("the design is lovely, but the lid is flimsy"),
   sarcasm-lite ("Great, it stopped working after nine days.",
   "My only complaint is that it ended too soon.") and neutral filler shared
   by both classes ("We ordered the dumplings and the curry.", "It runs about
   124 minutes.").  Verdicts mix plain and negated forms ("you won't regret it",
   "I can't recommend it") and the ambiguous "three stars" appears on both sides.
   Between 3 % and 20 % of a body is neutral filler.  The mixture weights are the
   module constants below; they were tuned so that a bag-of-words model stays
   near 0.85-0.90 while a frozen sentence encoder can still learn the task.
5. **Length.** The target length is skewed like real reviews: one-liners, a
   log-normal body (median about 55 words, clipped at 380), and a long tail of
   8.5 % of the multi-sentence reviews with 420-620 words, which exceed 512
   WordPiece tokens.  Sentences are never repeated inside one review.
6. **Label noise.** 4 % of the labels are flipped after generation, as in any
   human-labelled set.

The measured figures (size, balance, token lengths, bag-of-words baseline) and
the commands that produce them are in ``docs/data.md``.
"""

from __future__ import annotations

import functools
import math
import random

import pandas as pd

TOTAL_ROWS = 4000

POSITIVE_RATE = 0.6
NOISE_RATE = 0.04
# cumulative shares of the review shapes: one-liner, straight, turn (rest: balanced)
SHAPE_CUTS = (0.12, 0.91, 0.97)
# share of body sentences agreeing with the verdict in a "straight" review (uniform range)
STRAIGHT_ALIGN = (0.92, 1.0)
# share of neutral filler sentences in a review body (uniform range)
FILLER_RANGE = (0.03, 0.2)
# share of aspect opinions voiced as a negated opposite ("wasn't bad at all")
NEGATE_SHARE = 0.08
# sentence families of an opinionated body sentence, with weights
SENTENCE_FAMILIES = [("aspect", 40), ("event", 20), ("subject", 14), ("feeling", 10),
                     ("comparison", 4), ("contrast", 4), ("sarcasm", 3)]
# one-liner forms (see _one_liner), with weights; 1 and 5-8 are the tricky ones
ONE_LINER_FORMS = [(0, 4), (1, 1), (2, 3), (3, 3), (4, 3), (5, 1), (6, 1), (7, 1), (8, 1), (9, 3)]

# ---------------------------------------------------------------------------
# Shared vocabulary
# ---------------------------------------------------------------------------

POS_ADJ = [
    "great", "excellent", "superb", "solid", "impressive", "fantastic", "wonderful",
    "outstanding", "lovely", "terrific", "first-rate", "top-notch", "brilliant",
    "delightful", "remarkable", "strong", "polished", "pleasant", "spot-on",
    "exceptional", "good", "nice", "satisfying", "fine", "excellent", "superb",
    "charming", "refreshing", "memorable", "thoughtful",
]
NEG_ADJ = [
    "poor", "terrible", "awful", "disappointing", "mediocre", "weak", "sloppy",
    "frustrating", "underwhelming", "dreadful", "subpar", "lousy", "clumsy", "bad",
    "horrible", "lackluster", "forgettable", "annoying", "shoddy", "dismal",
    "painful", "messy", "tiresome", "flat", "bland", "careless", "irritating",
    "uninspired", "sloppy", "off-putting",
]
INTENSIFIERS = [
    "", "", "", "", "", "very ", "really ", "truly ", "incredibly ", "remarkably ",
    "pretty ", "quite ", "surprisingly ", "genuinely ", "absolutely ", "extremely ",
    "so ", "rather ", "fairly ", "downright ", "thoroughly ", "consistently ",
]

# intensifiers that also read well before a noun ("a truly awful kettle")
ATTR_INTENSIFIERS = [i for i in INTENSIFIERS if i not in ("so ", "pretty ", "quite ", "rather ", "fairly ")]

NUM_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve", "fifteen", "twenty"]

SENT_TAILS = [
    "", "", "", "", "", "", ", to be honest", ", if I'm honest", ", for what it's worth",
    ", as far as I'm concerned", ", which surprised me", ", frankly", ", in my opinion",
    ", at least for me", ", I have to say", ", no question", ", if you ask me",
    ", which I did not expect", ", as my partner pointed out", ", in fairness",
]

VERDICT_OPENERS = [
    "", "", "", "Overall, ", "All in all, ", "In the end, ", "Bottom line: ",
    "To sum up, ", "Honestly, ", "So yes, ", "So, ", "Long story short, ",
    "Verdict: ", "At the end of the day, ", "Final thoughts: ", "In short, ",
    "All things considered, ", "Taken as a whole, ", "My take: ", "When all is said and done, ",
]

TURN_CONNECTORS = [
    "But", "However,", "That said,", "Still,", "Even so,", "In spite of all that,",
    "Then again,", "And yet", "On the other hand,", "Having said that,", "Despite that,",
    "Be that as it may,", "Even with all that,", "All the same,",
]

CONTRAST = [", but ", ", though ", ", yet ", "; however, ", ", even if ", ", whereas ",
            ", although ", ", but honestly "]

TIME_AGO = ["last week", "two weeks ago", "a month ago", "last spring", "over the holidays",
            "a few days ago", "back in March", "last summer", "in October", "about a year ago",
            "last weekend", "three months ago", "on a rainy Sunday", "during a work trip",
            "in early January", "a couple of weeks back"]

PEOPLE = ["my sister", "a coworker", "my neighbor", "a friend from work", "my dad", "my brother",
          "my partner", "a colleague", "my roommate", "an old friend", "my aunt", "my son",
          "my daughter", "a friend of a friend", "my manager", "my cousin"]

BACKGROUND = [
    "I'm not an expert", "I'm fairly picky", "I read a lot of reviews before deciding",
    "I'm usually easy to please", "I had a tight budget", "I've tried a few alternatives",
    "I'm a bit of a skeptic", "I don't usually write reviews", "I was in a hurry",
    "I had a long list of requirements", "I'm new to this sort of thing",
    "I tend to be generous with ratings", "I work from home", "I travel a lot for work",
]

# ---------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------

DOMAINS = {
    "product": {
        "nouns": ["blender", "air fryer", "coffee grinder", "desk lamp", "backpack",
                  "office chair", "electric kettle", "keyboard", "wireless mouse", "monitor",
                  "vacuum", "rice cooker", "phone case", "bluetooth speaker", "smartwatch",
                  "tent", "water bottle", "hair dryer", "toaster", "cordless drill", "router",
                  "webcam", "rain jacket", "suitcase", "stand mixer", "robot vacuum", "tablet",
                  "e-reader", "space heater", "standing desk", "pressure cooker", "dash cam",
                  "label printer", "baby monitor", "garden hose", "yoga mat"],
        "category": ["gadgets", "appliances", "devices", "products of this kind", "models"],
        "aspects": [("the battery life", False), ("the build quality", False), ("the price", False),
                    ("the packaging", False), ("the instructions", True), ("the design", False),
                    ("the size", False), ("the weight", False), ("the durability", False),
                    ("the setup process", False), ("the materials", True), ("the finish", False),
                    ("the power cord", False), ("the buttons", True), ("the companion app", False),
                    ("customer support", False), ("the warranty process", False),
                    ("the motor", False), ("the handle", False), ("the lid", False),
                    ("the display", False), ("the sound", False), ("the charging speed", False),
                    ("the zipper", False), ("the hinges", True), ("the controls", True),
                    ("the stitching", False), ("the noise level", False)],
        "be": ["is", "is", "is", "was"],
        "pos_adj": ["sturdy", "reliable", "durable", "well made", "easy to use", "compact",
                    "comfortable", "quiet", "well designed", "handy", "versatile", "dependable"],
        "neg_adj": ["flimsy", "unreliable", "fragile", "cheaply made", "hard to use", "overpriced",
                    "bulky", "noisy", "badly designed", "awkward", "finicky", "useless"],
        "pos_events": [
            "it still works perfectly after {n} months",
            "setup took about {n} minutes",
            "it handles everything I throw at it",
            "I use it every single day",
            "it survived a fall down the stairs without a scratch",
            "the battery lasts {n} days between charges",
            "it arrived a day early and was well packed",
            "support replaced a missing part within {n} days",
            "it replaced {n} other gadgets on my counter",
            "{person} liked it so much that they ordered one too",
            "it paid for itself within {n} weeks",
            "it feels more expensive than it was",
        ],
        "neg_events": [
            "it stopped working after {n} days",
            "the {part} snapped off within a week",
            "the battery died after {n} hours",
            "it arrived with a cracked {part}",
            "the app kept disconnecting",
            "it started smelling like burnt plastic on day {n}",
            "support took {n} weeks to answer one email",
            "the {part} rattles every time I use it",
            "it overheated twice in the first week",
            "the replacement broke in exactly the same way",
            "it leaked all over my {place}",
            "half the features in the listing simply do not exist",
        ],
        "parts": ["handle", "lid", "hinge", "switch", "base", "clip", "strap", "cable", "screen",
                  "latch", "knob", "wheel"],
        "places": ["counter", "desk", "floor", "bag", "shelf", "kitchen table"],
        "filler": [
            "I bought it {time} to replace my old one.",
            "It comes in {n} colors and I picked the {color} one.",
            "The box includes the {noun}, a cable and a short manual.",
            "I've owned {n} similar {category} over the years.",
            "I mostly use it in the {room}.",
            "It's about the size of a {object}.",
            "I ordered it {time} after {person} mentioned it.",
            "I paid around {price} for it.",
            "The listing calls it a {color} {noun}.",
            "I use it roughly {n} times a week.",
            "It weighs a little under {n} pounds.",
            "For context, {background}.",
        ],
        "acquire": ["bought it", "ordered it", "picked it up", "got it"],
        "again": ["buy it again", "order another one", "buy it again without thinking",
                  "get a second one"],
        "cost": ["the money", "the price", "what they charge", "the price tag"],
        "waste": ["money", "money and time", "a perfectly good weekend"],
        "audience": ["anyone on a budget", "first-time buyers", "anyone", "people who travel a lot",
                     "beginners", "a friend", "anyone with a small apartment", "busy parents",
                     "students", "anyone who works from home"],
        "alts": ["my old one", "the cheaper model", "the brand-name version",
                 "the one my parents have", "last year's model", "the one I returned",
                 "the model everyone recommends"],
        "shelf": ["desk", "counter", "shelf", "daily routine"],
        "gerund": "buying",
        "good_gripes": ["I didn't buy one sooner", "now {person} keeps borrowing it", "I have no excuse left to replace it", "it makes my other {category} look bad", "I had to buy a second one for the {room}", "it only comes in {n} colors"],
    },
    "film": {
        "nouns": ["film", "movie", "thriller", "comedy", "sequel", "documentary", "drama",
                  "horror movie", "animated film", "sci-fi epic", "western", "romantic comedy",
                  "heist movie", "biopic", "remake", "musical", "war film", "mystery",
                  "coming-of-age story", "space opera", "courtroom drama", "road movie",
                  "monster movie", "spy thriller"],
        "category": ["films", "movies", "genre pictures", "sequels"],
        "aspects": [("the acting", False), ("the script", False), ("the pacing", False),
                    ("the soundtrack", False), ("the cinematography", False), ("the ending", False),
                    ("the dialogue", False), ("the lead performance", False),
                    ("the special effects", True), ("the plot", False), ("the editing", False),
                    ("the supporting cast", False), ("the first act", False), ("the villain", False),
                    ("the score", False), ("the costumes", True), ("the jokes", True),
                    ("the action scenes", True), ("the twist", False), ("the characters", True),
                    ("the direction", False), ("the set design", False), ("the chemistry", False),
                    ("the final act", False), ("the opening scene", False)],
        "be": ["was", "was", "is"],
        "pos_adj": ["gripping", "moving", "hilarious", "stunning", "clever", "heartfelt",
                    "thrilling", "beautifully shot", "funny", "tense", "gorgeous", "smart"],
        "neg_adj": ["boring", "predictable", "tedious", "confusing", "bloated", "cringeworthy",
                    "dull", "overlong", "pretentious", "lifeless", "muddled", "joyless"],
        "pos_events": [
            "I was hooked from the opening scene",
            "the theater applauded at the end",
            "I've already watched it {n} times",
            "it made me laugh out loud more than once",
            "I was on the edge of my seat for the last {n} minutes",
            "the ending had half the audience in tears",
            "I keep thinking about the final shot",
            "it flew by despite running {minutes} minutes",
            "I talked about it with {person} for an hour afterwards",
            "I went straight home and ordered the soundtrack",
        ],
        "neg_events": [
            "I checked my phone {n} times",
            "half the theater walked out",
            "I nearly fell asleep in the second act",
            "the twist was obvious from the trailer",
            "it felt much longer than its {n} minutes",
            "the plot holes piled up by the minute",
            "the audience laughed at the serious scenes",
            "I forgot most of it by the time I got home",
            "the sound mix buried half the dialogue",
            "{person} asked to leave after {n} minutes",
        ],
        "filler": [
            "I saw it {time} with {person}.",
            "It runs about {minutes} minutes.",
            "The director's previous film came out in {year}.",
            "I watched it at home on a {screen}.",
            "It's based on a novel from {year}.",
            "We caught the {hour} screening.",
            "The trailer came out {time}.",
            "It's the {ordinal} film in the series.",
            "I went in knowing almost nothing about it.",
            "The cast includes a few familiar faces.",
            "For context, {background}.",
        ],
        "acquire": ["saw it", "watched it", "caught it"],
        "again": ["watch it again", "see it a second time", "watch it again tomorrow"],
        "cost": ["the ticket price", "the rental fee", "two hours of your life", "the price of admission"],
        "waste": ["time", "two hours", "an evening", "a perfectly good Friday night"],
        "audience": ["fans of the genre", "anyone looking for a fun night in", "families",
                     "my film club", "anyone", "a friend", "people who like slow cinema",
                     "anyone who enjoyed the first one", "teenagers", "date nights"],
        "alts": ["the original", "the director's last film", "the first movie",
                 "the other release this month", "the trailer", "most films this year"],
        "shelf": ["watch list", "list of favorites", "shelf of comfort movies"],
        "gerund": "watching",
        "good_gripes": ["it ended too soon", "I now compare every film to it", "I have to wait for the sequel", "the credits came too early", "I can't get the soundtrack out of my head", "I cried in front of {person}"],
    },
    "book": {
        "nouns": ["novel", "memoir", "biography", "thriller", "fantasy novel",
                  "short story collection", "history book", "self-help book", "mystery",
                  "debut novel", "graphic novel", "science book", "romance novel", "travel book",
                  "essay collection", "crime novel", "family saga", "historical novel",
                  "business book", "audiobook"],
        "category": ["books", "novels", "titles", "books in this genre"],
        "aspects": [("the prose", False), ("the characters", True), ("the plot", False),
                    ("the pacing", False), ("the world-building", False), ("the ending", False),
                    ("the dialogue", False), ("the research", False), ("the translation", False),
                    ("the chapters", True), ("the narrator", False), ("the middle section", False),
                    ("the opening chapter", False), ("the themes", True), ("the structure", False),
                    ("the writing style", False), ("the twists", True), ("the protagonist", False),
                    ("the humor", False), ("the descriptions", True), ("the epilogue", False),
                    ("the footnotes", True), ("the cover", False)],
        "be": ["is", "was", "is"],
        "pos_adj": ["gripping", "moving", "beautifully written", "insightful", "clever",
                    "absorbing", "compelling", "witty", "engrossing", "tender", "sharp", "rich"],
        "neg_adj": ["dull", "repetitive", "shallow", "overwritten", "tedious", "predictable",
                    "clumsy", "bloated", "preachy", "thin", "plodding", "confusing"],
        "pos_events": [
            "I finished it in {n2} sittings",
            "I could not put it down",
            "I've already bought copies for {n} friends",
            "it stayed with me for weeks",
            "I read the last {n} chapters in one night",
            "I underlined something on almost every page",
            "our book club talked about it for {few} hours",
            "I immediately ordered the author's other books",
            "I missed my stop on the train twice because of it",
        ],
        "neg_events": [
            "I gave up around chapter {n}",
            "it took me {n} weeks to slog through it",
            "the twist was obvious by page {page}",
            "I skimmed the last {n} chapters",
            "I kept losing track of who was who",
            "it repeats the same point for {page} pages",
            "I fell asleep reading it {n} nights in a row",
            "our book club could not find anything to discuss",
            "it sat on my nightstand for {n} months",
        ],
        "filler": [
            "I read it {time} on my {device}.",
            "It's around {page} pages long.",
            "It's the {ordinal} book in the series.",
            "The author's first book came out in {year}.",
            "{person_cap} lent me their copy.",
            "I listened to part of it as an audiobook.",
            "It was our book club pick for {month}.",
            "I read it mostly on my commute.",
            "The edition I have includes a short interview with the author.",
            "For context, {background}.",
        ],
        "acquire": ["read it", "picked it up", "finished it"],
        "again": ["read it again", "reread it", "read it again next year"],
        "cost": ["the cover price", "the price", "the hours it takes"],
        "waste": ["time", "a week of evenings", "shelf space"],
        "audience": ["fans of the genre", "anyone who likes slow-burn stories", "book clubs",
                     "history buffs", "anyone", "a friend", "teenagers", "new readers",
                     "anyone who loved the author's earlier work", "people who read on vacation"],
        "alts": ["the author's debut", "the first book in the series", "the film adaptation",
                 "everything else I read this year", "the hype", "her previous novel"],
        "shelf": ["shelf", "list of favorites", "nightstand"],
        "gerund": "reading",
        "good_gripes": ["I finished it too fast", "I have to wait for the next one", "I lost a whole night's sleep to it", "every other book now feels flat next to it", "I missed my stop reading it", "I have to return it to {person}"],
    },
    "restaurant": {
        "nouns": ["restaurant", "bistro", "taco place", "ramen bar", "pizzeria", "steakhouse",
                  "diner", "sushi spot", "bakery", "cafe", "noodle house", "brunch place",
                  "tapas bar", "curry house", "burger joint", "seafood restaurant", "food truck",
                  "wine bar", "dumpling shop", "trattoria", "barbecue place", "vegan cafe"],
        "category": ["restaurants", "places in town", "spots like this", "restaurants in the area"],
        "aspects": [("the food", False), ("the service", False), ("the portions", True),
                    ("the atmosphere", False), ("the prices", True), ("the desserts", True),
                    ("the wait staff", False), ("the cocktails", True), ("the wine list", False),
                    ("the bread", False), ("the noodles", True), ("the pasta", False),
                    ("the seating", False), ("the music", False), ("the decor", False),
                    ("the menu", False), ("the coffee", False), ("the fries", True),
                    ("the broth", False), ("the appetizers", True), ("the staff", False),
                    ("the lighting", False), ("the patio", False), ("the sauce", False)],
        "be": ["was", "was", "is"],
        "pos_adj": ["delicious", "charming", "welcoming", "cozy", "fresh", "flavorful",
                    "friendly", "generous", "attentive", "inviting", "tasty", "lively"],
        "neg_adj": ["overpriced", "chaotic", "dirty", "greasy", "overrated", "cramped", "stale",
                    "rude", "slow", "tasteless", "soggy", "disorganized"],
        "pos_events": [
            "every dish arrived hot and beautifully plated",
            "our server remembered our names",
            "we are already planning our next visit",
            "the chef came out to say hello",
            "they found us a table for {n} without a reservation",
            "the {dish} was the best I've had in years",
            "they brought a free dessert for my {person_bare}'s birthday",
            "we were in and out in {n} minutes on a busy night",
            "the bill was lower than I expected",
        ],
        "neg_events": [
            "we waited {n2} minutes for a table",
            "my {dish} came out cold",
            "the server forgot our order twice",
            "the bill had {n} items we never ordered",
            "the {dish} tasted like it had been microwaved",
            "we found a hair in the {dish}",
            "the manager argued with us about the bill",
            "they ran out of the {dish} by {hour}",
            "the table next to us was never cleaned",
        ],
        "dishes": ["dumplings", "curry", "carbonara", "fish tacos", "ramen", "burger", "lasagna",
                   "pad thai", "ribeye", "margherita", "tiramisu", "fried chicken", "risotto",
                   "pho", "paella", "falafel plate", "cheesecake", "brisket"],
        "filler": [
            "We went {time} with {person}.",
            "We ordered the {dish} and the {dish2}.",
            "They take reservations online.",
            "It's a short walk from the station.",
            "We sat near the {spot}.",
            "The menu changes every {season}.",
            "There were {n} of us at the table.",
            "We got there around {hour}.",
            "It opened about {n} years ago.",
            "Parking is on the street.",
            "For context, {background}.",
        ],
        "acquire": ["ate here", "had dinner here", "went here", "had lunch here"],
        "again": ["go back", "come back", "eat here again", "return next month"],
        "cost": ["the bill", "the price", "the wait", "the money"],
        "waste": ["money", "an evening", "a night out", "a babysitter"],
        "audience": ["anyone in the neighborhood", "couples on a date night",
                     "families with kids", "visitors to the city", "anyone", "a friend",
                     "large groups", "anyone who loves spicy food", "coworkers", "brunch fans"],
        "alts": ["the place across the street", "their other location", "the old owner's version",
                 "the chain down the road", "my usual spot", "the place everyone raves about"],
        "shelf": ["list of regular spots", "list of favorites", "weekly rotation"],
        "gerund": "eating here",
        "good_gripes": ["I was too full for dessert", "now I crave the {dish} every week", "it's a {n}-minute drive from home", "we can't go every night", "I ate far too much {dish}", "the {dish} ruined every other version for me"],
    },
    "hotel": {
        "nouns": ["hotel", "inn", "resort", "guesthouse", "hostel", "bed and breakfast", "motel",
                  "lodge", "boutique hotel", "apartment rental", "beach resort", "airport hotel",
                  "mountain cabin", "city hotel", "spa hotel", "farm stay"],
        "category": ["hotels", "places", "rentals", "hotels in this price range"],
        "aspects": [("the room", False), ("the staff", False), ("the breakfast", False),
                    ("the location", False), ("the bed", False), ("the wifi", False),
                    ("check-in", False), ("the pool", False), ("the bathroom", False),
                    ("the view", False), ("the lobby", False), ("housekeeping", False),
                    ("the shower", False), ("the parking", False), ("the gym", False),
                    ("the front desk", False), ("the pillows", True), ("the towels", True),
                    ("the walls", True), ("the balcony", False), ("the air conditioning", False),
                    ("the elevators", True), ("the minibar", False)],
        "be": ["was", "was", "is"],
        "pos_adj": ["spotless", "comfortable", "welcoming", "charming", "peaceful", "convenient",
                    "clean", "spacious", "quiet", "bright", "relaxing", "modern"],
        "neg_adj": ["dirty", "noisy", "dated", "cramped", "overpriced", "run-down", "stuffy",
                    "shabby", "cold", "dingy", "unsafe", "chaotic"],
        "pos_events": [
            "the staff upgraded our room at no charge",
            "the bed was so comfortable I slept ten hours",
            "check-in took {n} minutes",
            "they kept our bags safe after checkout",
            "housekeeping left fresh flowers every day",
            "the concierge booked us a table at a great local place",
            "we could see the sea from the bed",
            "they fixed a dripping tap within {n} minutes",
        ],
        "neg_events": [
            "the shower ran cold every morning",
            "the air conditioning rattled all night",
            "our room smelled of smoke",
            "check-in took over {n2} minutes",
            "the wifi dropped every {n} minutes",
            "they charged us twice for the same night",
            "construction started outside at {hour} every day",
            "the sheets had stains on them",
            "nobody answered the front desk phone for {few} hours",
        ],
        "filler": [
            "We stayed {n} nights {time}.",
            "Our room was on the {ordinal} floor.",
            "It's about {n} minutes from the station.",
            "We booked through a travel site.",
            "We were there for a {occasion}.",
            "Breakfast is served until {hour}.",
            "We traveled with {person}.",
            "The building is about a hundred years old.",
            "There is a small supermarket across the road.",
            "For context, {background}.",
        ],
        "acquire": ["stayed here", "booked it", "stayed there"],
        "again": ["stay here again", "book it again", "come back", "return"],
        "cost": ["the room rate", "the price", "the money", "the resort fee"],
        "waste": ["money", "a vacation", "a long weekend", "our anniversary"],
        "audience": ["business travelers", "families", "couples", "anyone visiting the city",
                     "anyone", "a friend", "solo travelers", "people on a budget",
                     "anyone with a late flight", "hikers"],
        "alts": ["the chain hotel next door", "where we stayed last year",
                 "the place we booked last time", "the photos online", "other hotels nearby",
                 "the rental we had last summer"],
        "shelf": ["list of places to return to", "travel notes", "list of favorites"],
        "gerund": "staying here",
        "good_gripes": ["we had to check out", "home feels shabby now", "we only booked {n} nights", "I didn't want to leave", "the breakfast ruined my diet", "we did not book a longer stay"],
    },
}

DOMAIN_NAMES = ["product", "product", "film", "book", "restaurant", "hotel"]

SLOT_VALUES = {
    "color": ["black", "white", "gray", "blue", "green", "red", "silver", "beige", "navy"],
    "room": ["kitchen", "home office", "garage", "living room", "bedroom", "basement"],
    "object": ["shoebox", "paperback", "laptop", "loaf of bread", "cereal box", "wine bottle"],
    "screen": ["laptop", "big TV", "projector", "tablet", "tiny phone screen"],
    "hour": ["6 pm", "7 pm", "8 pm", "9 pm", "10 pm", "noon", "7 am", "11 am", "6 am", "late"],
    "ordinal": ["second", "third", "fourth", "fifth", "first", "sixth"],
    "device": ["e-reader", "phone", "tablet", "kitchen table", "couch"],
    "month": ["June", "March", "November", "September", "January", "May"],
    "spot": ["window", "kitchen", "bar", "back", "door", "fireplace"],
    "season": ["season", "month", "few weeks", "quarter"],
    "occasion": ["wedding", "conference", "birthday", "long weekend", "family visit",
                 "anniversary", "work trip", "concert"],
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeio" or word[:2].lower() == "un" else "a"


def _pick(rng: random.Random, items):
    return items[rng.randrange(len(items))]


def _weighted(rng: random.Random, pairs):
    """Pick a key from ``[(key, weight), ...]`` with one ``rng.random()`` draw."""
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for key, w in pairs:
        x -= w
        if x < 0:
            return key
    return pairs[-1][0]


def _be(rng: random.Random, d: dict, plural: bool) -> str:
    be = _pick(rng, d["be"])
    if plural:
        be = "are" if be == "is" else "were"
    return be


def _be_not(be: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return {"is": "isn't", "are": "aren't", "was": "wasn't", "were": "weren't"}[be]
    return be + " not"


def _fill(rng: random.Random, d: dict, template: str) -> str:
    """Fill ``{slot}`` markers; unknown slots are left alone."""
    out = template
    guard = 0
    while "{" in out and guard < 20:
        guard += 1
        start = out.index("{")
        end = out.index("}", start)
        slot = out[start + 1:end]
        out = out[:start] + _slot(rng, d, slot) + out[end + 1:]
    return out


def _slot(rng: random.Random, d: dict, slot: str) -> str:
    if slot == "n":
        return _pick(rng, NUM_WORDS)
    if slot == "few":
        return _pick(rng, ["two", "three", "four"])
    if slot == "n2":
        return _pick(rng, ["two", "three", "forty", "twenty", "thirty", "fifty", "ninety"])
    if slot == "minutes":
        return str(rng.randrange(84, 176))
    if slot == "page":
        return str(rng.randrange(60, 540))
    if slot == "year":
        return str(rng.randrange(1978, 2024))
    if slot == "price":
        return f"{rng.randrange(12, 300)} dollars"
    if slot == "time":
        return _pick(rng, TIME_AGO)
    if slot == "person":
        return _pick(rng, PEOPLE)
    if slot == "person_cap":
        return _cap(_pick(rng, PEOPLE))
    if slot == "person_bare":
        return _pick(rng, ["sister", "partner", "dad", "friend", "son", "wife", "husband"])
    if slot == "background":
        return _pick(rng, BACKGROUND)
    if slot == "noun":
        return _pick(rng, d["nouns"])
    if slot == "a_noun":
        noun = _pick(rng, d["nouns"])
        return f"{_article(noun)} {noun}"
    if slot == "category":
        return _pick(rng, d["category"])
    if slot == "part":
        return _pick(rng, d.get("parts", ["handle"]))
    if slot == "place":
        return _pick(rng, d.get("places", ["floor"]))
    if slot == "dish":
        return _pick(rng, d.get("dishes", ["special"]))
    if slot == "dish2":
        return _pick(rng, d.get("dishes2", ["salad", "soup of the day", "fries", "flatbread",
                                             "house salad", "chef's special"]))
    if slot in SLOT_VALUES:
        return _pick(rng, SLOT_VALUES[slot])
    return slot


def _adj(rng: random.Random, d: dict, s: int, domain_share: float = 0.0) -> str:
    if rng.random() < domain_share:
        return _pick(rng, d["pos_adj"] if s > 0 else d["neg_adj"])
    return _pick(rng, POS_ADJ if s > 0 else NEG_ADJ)


def _subject(rng: random.Random, d: dict, noun: str) -> str:
    return _pick(rng, [f"this {noun}", f"the {noun}", f"this {noun}", "it"])


# ---------------------------------------------------------------------------
# Clauses (lower-case, no final period) and sentences
# ---------------------------------------------------------------------------


def _aspect_clause(rng: random.Random, d: dict, s: int, negate_share: float | None = None) -> str:
    """An opinion about one aspect with polarity ``s`` (+1 / -1)."""
    asp, plural = _pick(rng, d["aspects"])
    be = _be(rng, d, plural)
    if negate_share is None:
        negate_share = NEGATE_SHARE
    if rng.random() < negate_share:
        # negation: the opposite adjective, negated
        adj = _adj(rng, d, -s, 0.3)
        form = rng.randrange(7)
        if form == 0:
            return f"{asp} {_be_not(be, rng)} {adj}"
        if form == 1:
            return f"{asp} {_be_not(be, rng)} {adj} at all"
        if form == 2:
            return f"{asp} {be} far from {adj}"
        if form == 3:
            return f"{asp} {be} not exactly {adj}"
        if form == 4:
            return f"I wouldn't call {asp} {adj}"
        if form == 5:
            return f"I can't say {asp} {be} {adj}"
        return f"{asp} never felt {adj}"
    adj = _adj(rng, d, s, 0.2)
    inten = _pick(rng, INTENSIFIERS)
    form = rng.randrange(6)
    if form == 0:
        return f"I found {asp} {inten}{adj}"
    if form == 1:
        past = {"is": "was", "are": "were"}.get(be, be)
        return f"I thought {asp} {past} {inten}{adj}"
    return f"{asp} {be} {inten}{adj}"


def _aspect_sentence(rng, d, s, noun):
    form = rng.randrange(9)
    if form <= 3:
        return _cap(_aspect_clause(rng, d, s)) + _pick(rng, SENT_TAILS) + "."
    if form == 4:
        asp, plural = _pick(rng, d["aspects"])
        pron = "they" if plural else "it"
        return (f"As for {asp}, {pron} {_be(rng, d, plural)} "
                f"{_pick(rng, INTENSIFIERS)}{_adj(rng, d, s, 0.3)}.")
    if form == 5:
        return (_cap(_aspect_clause(rng, d, s, 0.15)) + " and "
                + _aspect_clause(rng, d, s, 0.15) + ".")
    if form == 6:
        asp, plural = _pick(rng, d["aspects"])
        return f"What stood out was how {_adj(rng, d, s)} {asp} {_be(rng, d, plural)}."
    if form == 7:
        asp, plural = _pick(rng, d["aspects"])
        return f"{_cap(asp)}? {_cap(_pick(rng, INTENSIFIERS) + _adj(rng, d, s, 0.3))}."
    asp, _ = _pick(rng, d["aspects"])
    if s > 0:
        t = _pick(rng, ["I have nothing bad to say about {a}.", "No complaints at all about {a}.",
                        "{A} could not have been better.", "I couldn't be happier with {a}.",
                        "I honestly can't fault {a}.", "There's nothing wrong with {a}, either.",
                        "Nobody could complain about {a}.", "I didn't expect to like {a} this much."])
    else:
        t = _pick(rng, ["There is nothing good to say about {a}.", "{A} could not have been worse.",
                        "I couldn't find anything to like about {a}.", "Nothing about {a} works.",
                        "I didn't like {a} at all.", "{A} did nothing for me.",
                        "I can't think of a single nice thing about {a}.",
                        "I had no patience left for {a}."])
    return t.replace("{a}", asp).replace("{A}", _cap(asp))


def _subject_sentence(rng, d, s, noun):
    adj = _adj(rng, d, s, 0.6)
    inten = _pick(rng, INTENSIFIERS)
    form = _weighted(rng, [(0, 3), (1, 3), (2, 3), (3, 1), (4, 1), (5, 2)])
    if form == 0:
        return f"This {noun} is {inten}{adj}."
    if form == 1:
        return f"The {noun} turned out {inten}{adj}{_pick(rng, SENT_TAILS)}."
    if form == 2:
        phrase = f"{_pick(rng, ATTR_INTENSIFIERS)}{adj}"
        return f"It's {_article(phrase)} {phrase} {noun}."
    if form == 3:
        opp = _adj(rng, d, -s, 0.6)
        return f"This {noun} is {_pick(rng, ['not', 'anything but', 'far from', 'hardly'])} {opp}."
    if form == 4:
        return f"I expected {_adj(rng, d, -s, 0.5)} and got {adj} instead."
    return f"{_cap(_subject(rng, d, noun))} {_pick(rng, ['felt', 'seemed', 'came across as'])} {inten}{adj}."


def _feeling_sentence(rng, d, s, noun):
    """A plainly emotional sentence ("I'm thrilled with this kettle.")."""
    obj = _pick(rng, ["it", f"this {noun}", f"the {noun}", "everything about it", "the whole thing"])
    adv = _pick(rng, ["", "", "really ", "absolutely ", "honestly ", "just ", "genuinely ", "truly "])
    who = _pick(rng, ["It", f"This {noun}", f"The {noun}", "Honestly, it", "Frankly, it", "The whole thing"])
    if s > 0:
        t = _pick(rng, [
            f"I {adv}{_pick(rng, ['love', 'adore', 'enjoy', 'like'])} {obj}.",
            f"I'm {adv}{_pick(rng, ['thrilled', 'delighted', 'pleased', 'happy', 'impressed'])} with {obj}.",
            f"What a {_pick(rng, ['joy', 'treat', 'pleasure', 'delight', 'find', 'gem'])}{_pick(rng, ['!', '.'])}",
            f"{who} {_pick(rng, ['made my week', 'brightened my day', 'put a smile on my face', 'made me very happy', 'exceeded my expectations'])}{_pick(rng, SENT_TAILS)}.",
            f"I was {adv}{_pick(rng, ['blown away', 'pleasantly surprised', 'impressed', 'won over', 'charmed'])}.",
            f"{_cap(obj)} {_pick(rng, ['made me happy', 'was a joy', 'was a real pleasure', 'won me over'])}.",
        ])
    else:
        t = _pick(rng, [
            f"I {adv}{_pick(rng, ['hate', 'dislike', 'regret', 'resent'])} {obj}.",
            f"I'm {adv}{_pick(rng, ['disappointed', 'frustrated', 'annoyed', 'unhappy', 'fed up'])} with {obj}.",
            f"What a {_pick(rng, ['letdown', 'mess', 'waste', 'disaster', 'disappointment', 'shame'])}{_pick(rng, ['!', '.'])}",
            f"{who} {_pick(rng, ['ruined my week', 'spoiled my day', 'left me angry', 'made me miserable', 'fell short of my expectations'])}{_pick(rng, SENT_TAILS)}.",
            f"I was {adv}{_pick(rng, ['let down', 'upset', 'irritated', 'disappointed', 'unimpressed'])}.",
            f"{_cap(obj)} {_pick(rng, ['made me miserable', 'was a chore', 'was a real letdown', 'drove me up the wall'])}.",
        ])
    return t


def _event_sentence(rng, d, s, noun):
    clause = _fill(rng, d, _pick(rng, d["pos_events" if s > 0 else "neg_events"]))
    prefix = _pick(rng, ["", "", "", "Honestly, ", "Also, ", "To be fair, ", "I should mention that ",
                         "For example, ", "On top of that, ", "Funnily enough, ", "Worth noting: ",
                         "The thing is, "])
    return _cap(prefix + clause) + "."


def _comparison_sentence(rng, d, s, noun):
    alt = _pick(rng, d["alts"])
    much = _pick(rng, ["much ", "far ", "way ", "a lot ", "", "noticeably "])
    if s > 0:
        t = _pick(rng, [f"It's {much}better than {alt}.", f"It beats {alt} by a mile.",
                        f"It's not as {_adj(rng, d, -1, 0.5)} as some reviews claim.",
                        f"Compared with {alt}, it's {much}better.",
                        f"I prefer it to {alt}, no contest.",
                        f"It easily outdoes {alt}."])
    else:
        t = _pick(rng, [f"{_cap(alt)} was {much}better.", f"It's not as good as {alt}.",
                        f"It doesn't come close to {alt}.",
                        f"It's {much}worse than {alt}.",
                        f"Compared with {alt}, it's a step down.",
                        f"I'd take {alt} over this any day."])
    return t


def _contrast_sentence(rng, d, s_first, s_second, noun):
    """One sentence with two opposite halves; the second half carries ``s_second``."""
    a = _aspect_clause(rng, d, s_first, 0.15)
    b = _aspect_clause(rng, d, s_second, 0.2)
    return _cap(a) + _pick(rng, CONTRAST) + b + "."


def _sarcasm_sentence(rng, d, s, noun):
    if s < 0:
        clause = _fill(rng, d, _pick(rng, d["neg_events"]))
        t = _pick(rng, [f"Great, {clause}.", f"Oh wonderful, {clause}.", f"Just perfect: {clause}.",
                        f"Love that {clause}.", f"Brilliant, {clause}.",
                        f"Ten out of ten if you enjoy the fact that {clause}.",
                        f"Exactly what I wanted: {clause}.", f"Fantastic, just fantastic: {clause}.",
                        f"A real triumph, considering {clause}.",
                        f"Amazing how {clause}."])
        return t
    if rng.random() < 0.75:
        pre = _pick(rng, ["My only complaint is that", "The worst part is that", "My one gripe:",
                          "If I had to complain, it would be that", "The only bad news is that",
                          "Honestly, the only downside is that", "My biggest problem is that",
                          "The one terrible thing about it:", "Fair warning:"])
        return f"{pre} {_fill(rng, d, _pick(rng, d['good_gripes']))}."
    return _pick(rng, [
        f"I hate how much I {_pick(rng, ['love', 'enjoy', 'like', 'adore'])} this {noun}.",
        f"Bad news for my wallet, because now I want every {noun} they make.",
        f"It ruined other {_pick(rng, d['category'])} for me, in a good way.",
        f"I was ready to hate this {noun} and failed completely.",
        f"I tried hard to find something to complain about in this {noun} and came up empty.",
        f"Annoyingly, {_pick(rng, PEOPLE)} was right about this one.",
    ])


def _filler_sentence(rng, d, noun):
    t = _pick(rng, d["filler"] + [
        "I went in with {mood} expectations.",
        "{person_cap} recommended it to me.",
        "I'll try to keep this review of the {noun} {short}.",
        "Here is my {honest} take on this {noun}.",
        "I {acq} {time}.",
        "I've tried a lot of {category} over the years.",
        "A few details about the {noun} first.",
        "Some background: {background}.",
        "This is my {ordinal} review of {a_noun} on this site.",
        "I'm writing this {when}.",
    ])
    t = t.replace("{mood}", _pick(rng, ["no particular", "mixed", "high", "modest", "low", "cautious"]))
    t = t.replace("{short}", _pick(rng, ["short", "brief", "quick", "to the point", "fair", "balanced"]))
    t = t.replace("{honest}", _pick(rng, ["honest", "unfiltered", "two-cent", "full", "long-winded"]))
    t = t.replace("{acq}", _pick(rng, d["acquire"]))
    t = t.replace("{when}", _pick(rng, ["a few weeks later", "the next morning", "on my lunch break",
                                         "after thinking it over", "on the train home", "right away"]))
    return _fill(rng, d, t)


def _verdict_sentence(rng, d, s, noun):
    opener = _pick(rng, VERDICT_OPENERS)
    aud = _pick(rng, d["audience"])
    again = _pick(rng, d["again"])
    cost = _pick(rng, d["cost"])
    if s > 0:
        rec = _pick(rng, [
            f"I'd recommend it to {aud}", f"it's worth {cost}", f"I'd happily {again}",
            f"{_pick(rng, ['four', 'five', 'five', 'four and a half'])} stars from me",
            "it's a keeper", "I'm glad I gave it a chance",
            f"I wouldn't hesitate to recommend it to {aud}", "you won't regret it",
            "I can't recommend it enough", f"it has earned a spot on my {_pick(rng, d['shelf'])}",
            "definitely worth a look", f"I will {again}", f"this {noun} is a winner",
            f"I'm already telling {_pick(rng, PEOPLE)} about it",
            "three stars, leaning toward four", "I don't regret it one bit",
            f"it's one of the best {_pick(rng, d['category'])} I've come across",
            "it did everything I hoped for", "no regrets at all",
        ])
    else:
        rec = _pick(rng, [
            f"I wouldn't recommend it to {aud}", "save your money", f"it's not worth {cost}",
            f"{_pick(rng, ['one star', 'two stars', 'two stars', 'one and a half stars'])}, and that's generous",
            "I can't recommend it", "skip this one", f"I won't {again}",
            f"I regret {d['gerund']} it" if d["gerund"] in ("buying", "watching", "reading")
            else f"I regret {d['gerund']}",
            f"it was a waste of {_pick(rng, d['waste'])}", "look elsewhere",
            "I expected much more", "three stars, and I'm being kind",
            f"I wouldn't even recommend it to my worst enemy", "hard pass",
            f"this {noun} is a letdown", "it did nothing I hoped for",
            f"there are better {_pick(rng, d['category'])} out there",
            f"I'm {_pick(rng, ['returning it', 'asking for a refund', 'done with it', 'moving on'])}",
            "never again",
        ])
    return _cap(opener + rec) + _pick(rng, ["", "", "", ".", "!"]).lstrip(".") + "."


def _finish(text: str) -> str:
    return text.replace("!.", "!").replace("..", ".")


def _polar_sentence(rng, d, s, noun, allow_contrast=True):
    family = _weighted(rng, SENTENCE_FAMILIES)
    if family == "contrast" and not allow_contrast:
        family = "aspect"
    return {
        "aspect": _aspect_sentence,
        "event": _event_sentence,
        "subject": _subject_sentence,
        "comparison": _comparison_sentence,
        "feeling": _feeling_sentence,
        "contrast": lambda rng, d, s, noun: _contrast_sentence(rng, d, -s, s, noun),
        "sarcasm": _sarcasm_sentence,
    }[family](rng, d, s, noun)


# ---------------------------------------------------------------------------
# One-liners
# ---------------------------------------------------------------------------


def _one_liner(rng, d, s, noun):
    for _ in range(30):
        form = _weighted(rng, ONE_LINER_FORMS)
        adj = _adj(rng, d, s, 0.6)
        inten = _pick(rng, INTENSIFIERS)
        if form == 0:
            tail = _pick(rng, ["would buy again", "no complaints", "loved it", "worth it",
                               "highly recommended", "pleasant surprise"] if s > 0 else
                          ["would not repeat", "very disappointed", "skip it", "not worth it",
                           "big letdown", "what a shame"])
            text = f"{_cap(inten)}{adj} {noun}, {tail}."
        elif form == 1:
            opp = _adj(rng, d, -s, 0.5)
            text = f"Not {opp} at all, {_pick(rng, ['honestly', 'for the price', 'to my surprise', 'really'])}."
        elif form == 2:
            text = _cap(_fill(rng, d, _pick(rng, d["pos_events" if s > 0 else "neg_events"]))) + "."
        elif form == 3:
            text = _verdict_sentence(rng, d, s, noun)
        elif form == 4:
            text = _cap(_aspect_clause(rng, d, s, NEGATE_SHARE)) + "."
        elif form == 5 and s < 0:
            text = f"{_cap(_adj(rng, d, 1, 0.5))}? Not even close."
        elif form == 5:
            text = f"{_cap(_adj(rng, d, -1, 0.5))}? Not even close, it's {adj}."
        elif form == 6:
            if s > 0:
                text = _pick(rng, [f"Not {_adj(rng, d, 1)}, not {_adj(rng, d, -1)}, but I liked it.",
                                   f"Wanted to hate this {noun}, but no.",
                                   f"Didn't expect much, but it's {adj}."])
            else:
                text = _pick(rng, [f"Not {_adj(rng, d, -1)}, not {_adj(rng, d, 1)}, just forgettable.",
                                   f"Wanted to love this {noun}, but no.",
                                   f"Expected a lot, but it's {adj}."])
        elif form == 7:
            text = _sarcasm_sentence(rng, d, s, noun)
        elif form == 8:
            text = _contrast_sentence(rng, d, -s, s, noun)
        else:
            text = _subject_sentence(rng, d, s, noun)
        text = _finish(text)
        if 5 <= len(text.split()) <= 10:
            return text
    return text


# ---------------------------------------------------------------------------
# Whole reviews
# ---------------------------------------------------------------------------


def _target_words(rng: random.Random) -> int:
    if rng.random() < 0.085:
        return rng.randrange(420, 621)
    w = math.exp(rng.gauss(math.log(55.0), 0.75))
    return int(min(max(w, 14), 380))


def _review(rng: random.Random, label: int) -> tuple[str, str]:
    """One review with overall verdict ``label``; returns ``(text, shape)``."""
    y = 1 if label == 1 else -1
    domain = _pick(rng, DOMAIN_NAMES)
    noun = _pick(rng, DOMAINS[domain]["nouns"])
    d = dict(DOMAINS[domain], nouns=[noun])  # one subject per review

    r = rng.random()
    if r < SHAPE_CUTS[0]:
        return _one_liner(rng, d, y, noun), "one-liner"
    shape = "straight" if r < SHAPE_CUTS[1] else ("turn" if r < SHAPE_CUTS[2] else "balanced")
    target = _target_words(rng)

    sentences: list[str] = []
    seen: set[str] = set()
    words = 0

    def add(sent: str) -> None:
        nonlocal words
        sent = _finish(sent)
        if sent in seen:
            return
        seen.add(sent)
        sentences.append(sent)
        words += len(sent.split())

    # an optional opening: neutral context or an expectation
    if rng.random() < 0.45:
        add(_pick(rng, [
            _filler_sentence(rng, d, noun),
            f"I had {_pick(rng, ['high', 'low', 'modest', 'big'])} hopes for this {noun}.",
            f"I {_pick(rng, d['acquire'])} {_pick(rng, TIME_AGO)}.",
            f"I wasn't expecting much from this {noun}.",
            f"{_cap(_pick(rng, PEOPLE))} talked me into this {noun}.",
        ]))
    verdict_first = rng.random() < 0.12
    if verdict_first:
        add(_verdict_sentence(rng, d, y, noun))

    filler_p = rng.uniform(*FILLER_RANGE)
    if shape == "straight":
        align = rng.uniform(*STRAIGHT_ALIGN)
        body_target = target
    elif shape == "balanced":
        align = 0.5
        body_target = target
    else:  # turn: lean against the verdict first
        align = rng.uniform(0.1, 0.4)
        body_target = max(int(target * rng.uniform(0.45, 0.75)), 6)

    guard = 0
    while words < body_target and guard < 400:
        guard += 1
        if rng.random() < filler_p:
            add(_filler_sentence(rng, d, noun))
        else:
            s = y if rng.random() < align else -y
            add(_polar_sentence(rng, d, s, noun))

    if shape == "turn":
        conn = _pick(rng, TURN_CONNECTORS)
        clause = _pick(rng, [
            _aspect_clause(rng, d, y, 0.25),
            _fill(rng, d, _pick(rng, d["pos_events" if y > 0 else "neg_events"])),
            _aspect_clause(rng, d, y, 0.25),
        ])
        add(f"{conn} {clause}.")
        guard = 0
        while words < target and guard < 400:
            guard += 1
            if rng.random() < filler_p * 0.5:
                add(_filler_sentence(rng, d, noun))
            else:
                s = y if rng.random() < 0.8 else -y
                add(_polar_sentence(rng, d, s, noun, allow_contrast=False))

    # a closing verdict: sometimes left out, always there in a balanced review
    p_verdict = {"straight": 0.7, "turn": 0.85, "balanced": 1.0}[shape]
    if not verdict_first and rng.random() < p_verdict:
        add(_verdict_sentence(rng, d, y, noun))
    return " ".join(sentences), shape


def generate(n_rows: int = TOTAL_ROWS, seed: int = 0) -> pd.DataFrame:
    """Return ``n_rows`` synthetic reviews as a frame with columns ``text`` and ``label``.

    ``label`` is 1 for a positive overall verdict, 0 for a negative one (after 4 %
    label noise).  The same ``(n_rows, seed)`` always gives the same frame, and row
    ``i`` depends only on ``(seed, i)``.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    texts: list[str] = []
    labels: list[int] = []
    for i in range(int(n_rows)):
        rng = random.Random(f"reviews:{int(seed)}:{i}")
        label = 1 if rng.random() < POSITIVE_RATE else 0
        text, _shape = _review(rng, label)
        if rng.random() < NOISE_RATE:
            label = 1 - label
        texts.append(text)
        labels.append(label)
    return pd.DataFrame({"text": pd.Series(texts, dtype=object),
                         "label": pd.Series(labels, dtype="int64")})


@functools.lru_cache(maxsize=4)
def _generated(n_rows: int, seed: int) -> pd.DataFrame:
    return generate(n_rows, seed)


def cached(n_rows: int = TOTAL_ROWS, seed: int = 0) -> pd.DataFrame:
    """`generate(n_rows, seed)`, made once per process (0.6 s for the 4,000 rows on one core) and copied out.

    The trial server (executors/preload.py) calls it once, so every trial forked from it starts with the
    rows made; the copy keeps a trial that edits its frame from editing the next one's.
    """
    return _generated(int(n_rows), int(seed)).copy()
