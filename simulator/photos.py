"""The drones' photos: a small JPEG of each violation, the same bytes for the same seed.

A photo is a street scene — a building, the sidewalk, the parked vehicle with its plate —
with a caption band that burns in the drone id, the time and the violation code. The
simulator stores it in the lake's object store (``lake.image_path``) before it sends the
message that names it, so a message on the topic always has its photo.

A photo is put together from bytes encoded once, not encoded itself: thousands a second
beside the messages leave no time for a JPEG encoder (1.3 ms a photo here). Each seed gets
a few scenes, encoded with a restart marker after every MCU (16 × 16 pixels at 4:2:0), which
makes each MCU's entropy-coded data independent of its neighbours'. Text is set in cells of
one MCU across and two down, on the plain caption band and the plain plate, and every
character's two cells are encoded once in each style, with the scene's quality and
subsampling (so the same tables). A photo is its scene's data with the cells of its caption
and plate swapped in: a join of bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
import string
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from transforms import lake
from transforms.contract import DroneMessage
from transforms.object_store import use_beam_defaults

MCU = 16  # pixels across and down one MCU at 4:2:0 subsampling; a character cell is one across, two down
COLUMNS, ROWS = 40, 23  # MCUs across and down a photo
PHOTO_WIDTH, PHOTO_HEIGHT = COLUMNS * MCU, ROWS * MCU
JPEG_SETTINGS = {"format": "JPEG", "quality": 75, "subsampling": "4:2:0", "restart_marker_blocks": 1}
SCENES_PER_SEED = 6
WRITERS = 8  # photo files written at once
CAPTION_ROW = 0  # the caption's cells: MCU rows 0 and 1, every column
PLATE_ROW, PLATE_CELLS = 16, 8  # the plate's cells: MCU rows 16 and 17, eight columns
FONT_SIZE = 18
BAND_COLOUR, CAPTION_INK = (18, 20, 26), (245, 245, 240)
PLATE_COLOUR, PLATE_INK = (238, 238, 228), (25, 35, 95)
BODY_COLOURS = ((28, 58, 150), (150, 28, 32), (220, 220, 214), (30, 30, 34), (120, 124, 130), (198, 160, 40))
CHARACTERS = string.digits + string.ascii_letters + string.punctuation + " "
START_OF_SCAN, END_OF_IMAGE = 0xDA, b"\xff\xd9"
RESTART_MARKERS = [bytes((0xFF, 0xD0 + index)) for index in range(8)]
RESTART_MARKER = re.compile(rb"\xff[\xd0-\xd7]")


def scan_segments(jpeg: bytes) -> tuple[bytes, list[bytes]]:
    """A JPEG written with restart markers → its headers through the start of scan, and each interval's data."""
    position = 2  # after the start of image
    while True:
        marker, length = jpeg[position + 1], int.from_bytes(jpeg[position + 2 : position + 4], "big")
        position += 2 + length
        if marker == START_OF_SCAN:
            return jpeg[:position], RESTART_MARKER.split(jpeg[position : jpeg.rindex(END_OF_IMAGE)])


def pieces_around(head: bytes, segments: Sequence[bytes], cells: Sequence[int]) -> list[bytes]:
    """A JPEG's bytes around the MCUs at ``cells`` (in scan order): before the first, between each two, after the last.

    Restart markers RST0 … RST7 go between the segments in turn, as the encoder wrote them.
    """
    swapped, pieces, current = set(cells), [], [head]
    for index, segment in enumerate(segments):
        if index:
            current.append(RESTART_MARKERS[(index - 1) % 8])
        if index in swapped:
            pieces.append(b"".join(current))
            current = []
        else:
            current.append(segment)
    pieces.append(b"".join([*current, END_OF_IMAGE]))
    return pieces


def encoded(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **JPEG_SETTINGS)
    return buffer.getvalue()


def plate_text(image_id: str) -> str:
    """A New York style plate, ``ABC-1234``, fixed by the image id."""
    digest = hashlib.blake2b(image_id.encode(), digest_size=8).digest()
    letters = "".join(string.ascii_uppercase[byte % 26] for byte in digest[:3])
    return f"{letters}-{int.from_bytes(digest[3:], 'big') % 10_000:04d}"


def caption_text(report: DroneMessage) -> str:
    """What the caption band says, ``drone-0007 2026-11-28 17:00:03Z code 21``, cut or padded to its cells."""
    return f"{report.drone_id} {report.timestamp:%Y-%m-%d %H:%M:%S}Z code {report.violation_code}"[:COLUMNS].ljust(COLUMNS)


def set_in_cells(ink: tuple[int, int, int], paper: tuple[int, int, int]) -> dict[str, tuple[bytes, bytes]]:
    """Every character of :data:`CHARACTERS` in its cell, ``ink`` on ``paper``: the data of its upper and lower MCU.

    All cells are drawn side by side in one image and encoded once; a character without a
    cell of its own is set as ``?``.
    """
    font = ImageFont.load_default(size=FONT_SIZE)
    sheet = Image.new("RGB", (MCU * len(CHARACTERS), 2 * MCU), paper)
    draw = ImageDraw.Draw(sheet)
    for index, character in enumerate(CHARACTERS):
        draw.text((index * MCU + MCU / 2, MCU), character, font=font, fill=ink, anchor="mm")
    _, segments = scan_segments(encoded(sheet))
    return {character: (segments[index], segments[len(CHARACTERS) + index]) for index, character in enumerate(CHARACTERS)}


@dataclass(frozen=True)
class Scene:
    """One background's bytes around the cells a photo sets its text in (:func:`text_cells`)."""

    pieces: tuple[bytes, ...]
    plate_column: int


def text_cells(plate_column: int) -> list[int]:
    """The MCUs that text is set in, in scan order: the caption's two rows, then the plate's."""
    rows = [
        (CAPTION_ROW, 0, COLUMNS),
        (CAPTION_ROW + 1, 0, COLUMNS),
        (PLATE_ROW, plate_column, PLATE_CELLS),
        (PLATE_ROW + 1, plate_column, PLATE_CELLS),
    ]
    return [row * COLUMNS + column for row, first, count in rows for column in range(first, first + count)]


def draw_scene(seed: int, index: int) -> tuple[Image.Image, int]:
    """A street with a parked vehicle, its plate and the caption band plain, fixed by seed and index;
    also the first MCU column of the plate's cells."""
    rng = np.random.default_rng([seed, index])
    pixels = np.empty((PHOTO_HEIGHT, PHOTO_WIDTH, 3), np.float32)
    pixels[:150] = rng.integers(110, 190, 3)  # the building across the sidewalk
    pixels[150:190] = (168, 166, 160)  # sidewalk
    pixels[190:] = (84, 86, 90)  # asphalt
    grain = rng.normal(0.0, 8.0, (PHOTO_HEIGHT, PHOTO_WIDTH, 1)) + rng.normal(0.0, 3.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for column in range(int(rng.integers(10, 40)), PHOTO_WIDTH, 90):  # windows
        for top in (45, 95):
            draw.rectangle((column, top, column + 44, top + 34), fill=(62, 78, 96), outline=(40, 40, 44), width=3)
    draw.rectangle((0, 186, PHOTO_WIDTH, 192), fill=(120, 118, 112))  # the curb
    for column in range(0, PHOTO_WIDTH, 120):
        draw.rectangle((column, 352, column + 60, 358), fill=(214, 190, 60))  # lane marking
    plate_column = int(rng.integers(10, COLUMNS - PLATE_CELLS - 10))
    plate_left, plate_top = plate_column * MCU, PLATE_ROW * MCU
    plate_right, plate_bottom = plate_left + PLATE_CELLS * MCU, plate_top + 2 * MCU
    body = BODY_COLOURS[int(rng.integers(len(BODY_COLOURS)))]
    left, right = plate_left - 110, plate_right + 110
    draw.rounded_rectangle((left + 30, 150, right - 30, 215), 26, fill=body)  # cabin
    draw.rounded_rectangle((left + 52, 160, right - 52, 208), 14, fill=(140, 172, 196))  # rear window
    draw.rounded_rectangle((left, 200, right, 312), 22, fill=body)  # body
    for lamp in (left + 12, right - 52):
        draw.rectangle((lamp, 222, lamp + 40, 244), fill=(200, 30, 30))
    for wheel in (left + 26, right - 66):
        draw.rectangle((wheel, 306, wheel + 40, 340), fill=(22, 22, 24))
    draw.rectangle((plate_left - 4, plate_top - 4, plate_right + 3, plate_bottom + 3), fill=(60, 60, 60))  # its frame
    draw.rectangle((plate_left, plate_top, plate_right - 1, plate_bottom - 1), fill=PLATE_COLOUR)
    draw.rectangle((0, CAPTION_ROW * MCU, PHOTO_WIDTH, (CAPTION_ROW + 2) * MCU - 1), fill=BAND_COLOUR)
    return image, plate_column


def scene_of(seed: int, index: int) -> Scene:
    image, plate_column = draw_scene(seed, index)
    head, segments = scan_segments(encoded(image))
    return Scene(tuple(pieces_around(head, segments, text_cells(plate_column))), plate_column)


class PhotoRenderer:
    """The photos of one seed's fleet: each violation's scene chosen by its image id, its caption and plate set in."""

    def __init__(self, seed: int) -> None:
        self._scenes = [scene_of(seed, index) for index in range(SCENES_PER_SEED)]
        self._caption = set_in_cells(CAPTION_INK, BAND_COLOUR)
        self._plate = set_in_cells(PLATE_INK, PLATE_COLOUR)

    def render(self, report: DroneMessage) -> bytes:
        """The JPEG of a violation report (one with an image id)."""
        scene = self._scenes[zlib.crc32(report.image_id.encode()) % len(self._scenes)]
        caption = [self._caption.get(character, self._caption["?"]) for character in caption_text(report)]
        plate = [self._plate.get(character, self._plate["?"]) for character in plate_text(report.image_id)]
        cells = [upper for upper, _ in caption] + [lower for _, lower in caption]
        cells += [upper for upper, _ in plate] + [lower for _, lower in plate]
        parts: list[bytes] = [b""] * (2 * len(cells) + 1)
        parts[0::2], parts[1::2] = scene.pieces, cells
        return b"".join(parts)


class Camera:
    """Takes each violation's photo and stores it in the lake at ``root`` through the lake's own atomic writes.

    Rendering takes microseconds; creating the file waits on the disk (a millisecond and more
    when other work writes too), so :data:`WRITERS` files are written at once, in threads.
    """

    def __init__(self, root: str, seed: int) -> None:
        if not lake.is_local(root):
            use_beam_defaults()  # the simulator runs no pipeline
        self.root = root
        self._renderer = PhotoRenderer(seed)
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="photo-writer")

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *_: object) -> None:
        self._writers.shutdown(wait=True)

    def take(self, report: DroneMessage) -> Future[str]:
        """Render the report's photo and store it in the background: the future's result is its path, or the
        OSError of a store that refused it."""
        path = lake.image_path(self.root, report.timestamp, report.image_id)
        return self._writers.submit(lake.write_file_atomically, self.root, path, self._renderer.render(report))
