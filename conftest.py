pytest_plugins = ["hub.testing"]


def pytest_collection_modifyitems(items):
    """The whole-hub modules of tests/ first, the rest in their usual order.

    `make test` hands whole modules to its workers in collection order, and
    tests/ (end to end, operations, ordering) holds the modules that take longest:
    collected last, as testpaths would have them, one of them starting near the end
    would keep a worker busy minutes after the others finished. A stable sort by
    module keeps each module's tests together and in their order.
    """
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/") else 1)
