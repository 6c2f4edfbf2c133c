"""Callables of examples/word-count.yaml, imported by workers from the DAGs folder.

A callable is called with the run's params and its upstream tasks' outputs as keyword
arguments (only those it names); what it returns (JSON) is its task's output.
"""


def count_words(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def most_common(count: dict[str, int], top: int) -> list[list]:
    ranked = sorted(count.items(), key=lambda item: (-item[1], item[0]))
    return [[word, n] for word, n in ranked[:top]]
