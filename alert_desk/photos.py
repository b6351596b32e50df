"""The alerts' photos, as the desk finds them in the lake's object store.

A drone stores a violation's photo before it sends the message (``python -m simulator``),
at the place ``transforms.lake.image_path`` gives: the lake root, the sighting's day and
the image id. The desk reads it from there, through the same filesystem layer (a folder,
``gs://`` or ``s3://``), and only for an image id the contract accepts: a file name, never
a path. A photo once found stays found (nothing deletes photos while alerts are open), so
the desk remembers the last :data:`REMEMBERED` it found, and a list of alerts asks the store
only about photos it has not seen yet.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from transforms import lake
from transforms.contract import parse_timestamp
from transforms.object_store import use_beam_defaults

REMEMBERED = 100_000
PHOTO_ROUTE = "/api/photos/{image_id}"


def photo_url(image_id: str) -> str:
    """Where the desk serves an alert's photo (behind the same sign-in as the rest of the API)."""
    return PHOTO_ROUTE.format(image_id=image_id)


class Photos:
    """The photos of the lake at ``root``, looked up by image id and the time of the sighting."""

    def __init__(self, root: str, remembered: int = REMEMBERED) -> None:
        if not lake.is_local(root):
            use_beam_defaults()  # the desk runs no pipeline
        self._root = root
        self._remembered = remembered
        self._found: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, image_id: str, observed_at: str) -> str:
        """The photo's place in the store; ValueError for an image id the contract refuses."""
        return lake.image_path(self._root, parse_timestamp(observed_at), image_id)

    def is_missing(self, image_id: str, observed_at: str) -> bool:
        """Whether the store has no photo for this sighting (asked once per photo, until it is there).

        A store that does not answer cannot show the photo either: missing for now, asked again next time.
        """
        with self._lock:
            if image_id in self._found:
                self._found.move_to_end(image_id)
                return False
        try:
            if not lake.file_exists(self.path(image_id, observed_at)):
                return True
        except OSError:
            return True
        self._remember(image_id)
        return False

    def read(self, image_id: str, observed_at: str) -> bytes | None:
        """The photo's bytes, or None where the store has none."""
        payload = lake.read_file(self.path(image_id, observed_at))
        if payload is not None:
            self._remember(image_id)
        return payload

    def _remember(self, image_id: str) -> None:
        with self._lock:
            self._found[image_id] = None
            self._found.move_to_end(image_id)
            while len(self._found) > self._remembered:
                self._found.popitem(last=False)
