"""Draw the demo's example images (static/playground/examples/*.jpg) with Pillow.

Simple made-up scenes (a street, a kitchen table, a park), drawn here so that nothing is
downloaded or copied: ``manage.py make_demo_examples`` writes them again, identically
(fixed seed). Small JPEGs (tens of KB) committed beside the code.
"""

from __future__ import annotations

import random
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from PIL import Image, ImageDraw, ImageFilter

SIZE = (640, 480)
QUALITY = 80


def _gradient(top: tuple, bottom: tuple, size=SIZE) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / (height - 1)
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    return image


def _grain(image: Image.Image, rng: random.Random, amount: int = 10) -> Image.Image:
    """A little noise and blur, so the scene is not flat colour (and compresses like a photo)."""
    noise = Image.effect_noise(image.size, amount).convert("RGB")
    image = Image.blend(image, noise, 0.06)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def _car(draw: ImageDraw.ImageDraw, x: int, y: int, w: int, colour: tuple) -> None:
    h = w // 3
    draw.rounded_rectangle([x, y + h // 2, x + w, y + h + h // 2], radius=h // 4, fill=colour)
    draw.rounded_rectangle(
        [x + w // 5, y, x + w * 4 // 5, y + h // 2 + 4], radius=h // 5, fill=colour
    )
    glass = (170, 200, 225)
    draw.rectangle([x + w // 5 + 6, y + 5, x + w // 2 - 3, y + h // 2], fill=glass)
    draw.rectangle([x + w // 2 + 3, y + 5, x + w * 4 // 5 - 6, y + h // 2], fill=glass)
    r = h // 3
    for cx in (x + w // 5, x + w * 4 // 5):
        draw.ellipse([cx - r, y + h + h // 2 - r, cx + r, y + h + h // 2 + r], fill=(25, 25, 28))
        draw.ellipse(
            [cx - r // 2, y + h + h // 2 - r // 2, cx + r // 2, y + h + h // 2 + r // 2],
            fill=(150, 150, 155),
        )


def _person(draw: ImageDraw.ImageDraw, x: int, y: int, h: int, shirt: tuple) -> None:
    head = h // 7
    skin = (224, 180, 150)
    draw.ellipse([x - head // 2, y, x + head // 2, y + head], fill=skin)
    draw.rounded_rectangle(
        [x - head * 0.7, y + head, x + head * 0.7, y + h * 0.55], radius=5, fill=shirt
    )
    draw.line(
        [(x - head * 0.7, y + head * 1.3), (x - head * 1.1, y + h * 0.5)],
        fill=shirt,
        width=max(3, head // 3),
    )
    draw.line(
        [(x + head * 0.7, y + head * 1.3), (x + head * 1.1, y + h * 0.5)],
        fill=shirt,
        width=max(3, head // 3),
    )
    legs = (40, 50, 80)
    draw.line(
        [(x - head * 0.35, y + h * 0.55), (x - head * 0.5, y + h)],
        fill=legs,
        width=max(4, head // 2),
    )
    draw.line(
        [(x + head * 0.35, y + h * 0.55), (x + head * 0.5, y + h)],
        fill=legs,
        width=max(4, head // 2),
    )


def street(rng: random.Random) -> Image.Image:
    image = _gradient((120, 170, 230), (205, 225, 245))
    draw = ImageDraw.Draw(image)
    for i, x in enumerate(range(-20, 660, 110)):  # buildings
        top = rng.randint(60, 170)
        shade = 150 + (i * 23) % 70
        draw.rectangle([x, top, x + 100, 300], fill=(shade, shade - 20, shade - 40))
        for wy in range(top + 15, 280, 30):
            for wx in range(x + 12, x + 90, 26):
                draw.rectangle([wx, wy, wx + 14, wy + 18], fill=(90, 110, 140))
    draw.rectangle([0, 300, 640, 480], fill=(70, 72, 78))  # road
    draw.rectangle([0, 292, 640, 312], fill=(175, 170, 160))  # pavement
    for x in range(0, 640, 80):
        draw.rectangle([x + 10, 400, x + 50, 408], fill=(235, 235, 225))
    _car(draw, 40, 330, 200, (190, 30, 35))
    _car(draw, 380, 350, 230, (30, 80, 170))
    _person(draw, 300, 205, 120, (230, 140, 30))
    _person(draw, 590, 215, 105, (60, 150, 80))
    return _grain(image, rng)


def kitchen(rng: random.Random) -> Image.Image:
    image = _gradient((235, 225, 205), (215, 200, 175))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, 640, 190], fill=(200, 215, 220))  # wall tiles
    for x in range(0, 640, 40):
        draw.line([(x, 0), (x, 190)], fill=(180, 195, 200), width=2)
    for y in range(0, 190, 40):
        draw.line([(0, y), (640, y)], fill=(180, 195, 200), width=2)
    draw.polygon([(0, 230), (640, 230), (640, 480), (0, 480)], fill=(150, 105, 65))  # table
    for x in range(0, 640, 64):
        draw.line([(x, 230), (x - 40, 480)], fill=(135, 92, 55), width=2)
    draw.ellipse([70, 300, 270, 380], fill=(245, 245, 242))  # plate
    draw.ellipse([110, 315, 230, 365], fill=(230, 230, 226))
    draw.ellipse([140, 320, 180, 350], fill=(210, 60, 40))  # tomato
    draw.rounded_rectangle([330, 250, 400, 350], radius=10, fill=(40, 110, 180))  # cup
    draw.arc([385, 275, 430, 325], start=-90, end=90, fill=(40, 110, 180), width=9)
    draw.rectangle([470, 120, 520, 330], fill=(60, 140, 70))  # bottle
    draw.rectangle([485, 80, 505, 125], fill=(60, 140, 70))
    draw.rectangle([470, 200, 520, 250], fill=(240, 235, 210))
    draw.ellipse([540, 330, 620, 390], fill=(235, 200, 40))  # banana-ish
    draw.ellipse([548, 325, 612, 372], fill=(150, 105, 65))
    draw.line([(280, 300), (300, 400)], fill=(190, 190, 195), width=6)  # knife
    return _grain(image, rng)


def park(rng: random.Random) -> Image.Image:
    image = _gradient((140, 190, 240), (220, 235, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 260, 640, 480], fill=(85, 150, 70))  # grass
    for _ in range(900):
        x, y = rng.randrange(640), rng.randrange(262, 480)
        draw.line([(x, y), (x + rng.randint(-2, 2), y - rng.randint(3, 8))], fill=(60, 125, 50))
    for x, size in ((60, 110), (250, 80), (520, 130)):  # trees
        draw.rectangle([x - 10, 260 - size // 2, x + 10, 290], fill=(100, 70, 40))
        draw.ellipse(
            [x - size // 2, 150 - size // 2, x + size // 2, 260 - size // 3], fill=(40, 110, 45)
        )
    # a dog
    body = (150, 100, 55)
    draw.ellipse([330, 360, 450, 410], fill=body)
    draw.ellipse([430, 335, 475, 375], fill=body)
    draw.polygon([(440, 340), (448, 318), (458, 340)], fill=(110, 70, 35))
    for lx in (345, 370, 415, 435):
        draw.rectangle([lx, 395, lx + 9, 440], fill=body)
    draw.line([(332, 375), (300, 350)], fill=body, width=7)
    _person(draw, 230, 270, 170, (200, 50, 120))
    draw.line([(250, 345), (440, 365)], fill=(30, 30, 30), width=2)  # leash
    draw.ellipse([540, 420, 575, 455], fill=(230, 60, 40))  # ball
    draw.rectangle([100, 330, 200, 345], fill=(120, 80, 45))  # bench
    draw.rectangle([100, 305, 200, 315], fill=(120, 80, 45))
    for lx in (108, 188):
        draw.rectangle([lx, 345, lx + 6, 375], fill=(60, 60, 60))
    return _grain(image, rng)


SCENES = {"street.jpg": street, "kitchen.jpg": kitchen, "park.jpg": park}


class Command(BaseCommand):
    help = "Draw the demo's example images into static/playground/examples/."

    def add_arguments(self, parser):
        default = Path(settings.BASE_DIR) / "static" / "playground" / "examples"
        parser.add_argument("--out", type=Path, default=default)

    def handle(self, *args, out: Path, **options):
        out.mkdir(parents=True, exist_ok=True)
        for name, draw in SCENES.items():
            image = draw(random.Random(name))
            path = out / name
            image.save(path, format="JPEG", quality=QUALITY, optimize=True)
            self.stdout.write(f"{path} {path.stat().st_size} bytes")
