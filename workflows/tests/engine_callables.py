"""Python callables that engine tests name in their DAGs."""


def produce_numbers():
    return [1, 2, 3]


def scale_numbers(produce, factor):
    return [n * factor for n in produce]


def noop():
    return None
