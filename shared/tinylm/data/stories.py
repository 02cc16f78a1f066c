"""A small seeded grammar of children's stories: the text corpus that needs no download.

`story(seed, i)` is story i of a corpus; it depends only on (seed, i), so any slice of a corpus
is the same whoever writes it. A story has a hero (a child or an animal, with a trait), a place,
an object, a wish or a problem, one or two events, an ending and sometimes a moral; some
sentences count things ("She had 3 red balls."), some are dialogue in quotes, and the tense,
pronouns and articles agree. About 50 words a story, a vocabulary of about 250 words.

`write_tinystories(path, count, seed)` writes a corpus in the layout of the TinyStories files
as distributed (TinyStoriesV2-GPT4-train.txt): each story followed by a line `<|endoftext|>`.
"""

from __future__ import annotations

import random

from tinylm.base.files import atomic_path

END_OF_TEXT = "<|endoftext|>"

_GIRLS = ("Lily", "Mia", "Sue", "Anna", "Lucy", "Emma", "Zoe", "Ella", "Rose", "Kim")
_BOYS = ("Tom", "Ben", "Max", "Sam", "Leo", "Tim", "Jack", "Ned", "Bob", "Finn")
_ANIMALS = ("cat", "dog", "bunny", "bird", "fox", "frog", "bear", "duck", "mouse", "puppy", "kitten", "owl")
_TRAITS = ("little", "happy", "brave", "shy", "kind", "curious", "silly", "sleepy", "small", "clever")
_PLACES = ("the park", "the forest", "the garden", "the beach", "a big house", "a small town", "the farm",
           "the woods", "the hill", "the lake")
_COLORS = ("red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "shiny", "soft")
_THINGS = ("ball", "kite", "hat", "box", "toy car", "doll", "book", "cake", "drum", "boat", "flower", "shell")
_FRIENDS = ("mom", "dad", "grandma", "a friend", "the teacher", "a little girl", "a big dog", "an old man")
_FEELINGS = ("happy", "sad", "scared", "excited", "proud", "angry", "surprised", "tired")
_ACTIONS = (("play", "played"), ("run", "ran"), ("jump", "jumped"), ("sing", "sang"), ("dance", "danced"),
            ("swim", "swam"), ("climb", "climbed"), ("look", "looked"), ("hide", "hid"), ("laugh", "laughed"))
_WEATHER = ("sunny", "rainy", "windy", "cold", "warm", "bright")
_TIMES = ("One day", "One morning", "Once upon a time", "Long ago", "One sunny day", "Last summer")
_MORALS = ("Sharing makes everyone happy.", "It is good to be kind.", "Friends help each other.",
           "Being brave is not so hard.", "Always say thank you.", "It is fun to try new things.")
_NUMBERS = ("two", "three", "four", "five")


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _plural(word: str) -> str:
    return f"{word}es" if word.endswith("x") else f"{word}s"


class _Hero:
    """Who the story is about, with the words that must agree with it."""

    def __init__(self, rng: random.Random):
        kind = rng.random()
        self.trait = rng.choice(_TRAITS)
        if kind < 0.6:
            girl = rng.random() < 0.5
            self.name = rng.choice(_GIRLS if girl else _BOYS)
            self.intro = f"a {self.trait} {'girl' if girl else 'boy'} named {self.name}"
            self.he, self.his = ("she", "her") if girl else ("he", "his")
        else:
            animal = rng.choice(_ANIMALS)
            self.name = f"the {animal}"
            self.intro = f"{_a(self.trait)} {animal}"
            self.he, self.his = "it", "its"

    @property
    def He(self) -> str:
        return self.he.capitalize()

    @property
    def Name(self) -> str:
        return self.name[0].upper() + self.name[1:]


def _opening(rng: random.Random, h: _Hero, place: str) -> list[str]:
    first = rng.choice([f"{rng.choice(_TIMES)}, there was {h.intro}.",
                        f"{rng.choice(_TIMES)}, {h.intro} lived in {place}."])
    lines = [first]
    if "lived" not in first:
        lines.append(f"{h.He} lived in {place}.")
    if rng.random() < 0.5:
        lines.append(f"{h.He} liked to {rng.choice(_ACTIONS)[0]} every day.")
    return lines


def _middle(rng: random.Random, h: _Hero, thing: str, color: str) -> list[str]:
    friend = rng.choice(_FRIENDS)
    n = rng.randint(2, 9)
    options = [
        [f"{h.Name} had {n} {color} {_plural(thing)}.", f"{h.He} wanted one more."],
        [f"One day, {h.name} found {_a(color)} {thing}.", f"{h.He} was very {rng.choice(_FEELINGS)}."],
        [f"{h.Name} lost {h.his} {color} {thing}.", f"{h.He} looked for it for {n} hours."],
        [f"It was a {rng.choice(_WEATHER)} day.", f"{h.Name} went out with {friend}."],
        [f"{h.Name} saw {_a(thing)} on a tree.", f"\"I want that {thing}!\" {h.he} said."],
    ]
    lines = list(rng.choice(options))
    verb, past = rng.choice(_ACTIONS)
    events = [
        f"Then {h.name} and {friend} {past} together.",
        f"{h.He} asked {friend}, \"Can you help me?\"",
        f"\"Let's {verb}!\" said {friend}.",
        f"{h.Name} counted to {min(n, 5)}: " + ", ".join(str(k) for k in range(1, min(n, 5) + 1)) + ".",
        f"Suddenly, it began to rain, and {h.name} felt {rng.choice(_FEELINGS)}.",
        f"{h.He} gave {rng.choice(_NUMBERS)} {_plural(thing)} to {friend}.",
    ]
    lines += rng.sample(events, rng.randint(1, 2))
    return lines


def _ending(rng: random.Random, h: _Hero, thing: str) -> list[str]:
    lines = [rng.choice([f"In the end, {h.name} was very {rng.choice(('happy', 'proud', 'glad'))}.",
                         f"{h.Name} smiled and hugged {h.his} {thing}.",
                         f"That night, {h.name} went to bed with a big smile.",
                         f"{h.Name} said, \"Thank you!\" and {rng.choice(_ACTIONS)[1]} all day."])]
    if rng.random() < 0.4:
        lines.append(rng.choice(_MORALS))
    return lines


def story(seed: int, i: int) -> str:
    """Story `i` of the corpus seeded `seed`: a few sentences on one or two lines."""
    rng = random.Random(f"stories:{seed}:{i}")
    hero, place = _Hero(rng), rng.choice(_PLACES)
    thing, color = rng.choice(_THINGS), rng.choice(_COLORS)
    parts = [_opening(rng, hero, place), _middle(rng, hero, thing, color), _ending(rng, hero, thing)]
    paragraphs = [" ".join(p) for p in parts]
    if rng.random() < 0.5:  # some stories are one paragraph, some have a blank line inside
        return " ".join(paragraphs)
    return "\n\n".join([paragraphs[0], " ".join(paragraphs[1:])])


def write_tinystories(path, count: int, seed: int) -> None:
    """Stories 0..count-1, each followed by a line `<|endoftext|>`, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i in range(count):
            f.write(story(seed, i) + "\n" + END_OF_TEXT + "\n")
