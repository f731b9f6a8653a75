from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab import Lab, lab_session


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    yield from lab_session()
