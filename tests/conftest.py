"""Every test starts from the same random state, whichever worker runs it and in whatever order."""

import pytest

from vlp_course.course import seed_everything


@pytest.fixture(autouse=True)
def _seeded():
    seed_everything(0)
    yield
