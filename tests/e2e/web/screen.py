"""What a user sees of the portal, read from screenshots (what Chromium composited on the
screen), not from the page's own buffers."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from playwright.sync_api import Locator, Page

# The screenshot is decoded by the browser itself, in a blank page of the same context.
_CLASSIFY = """async (png) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + png;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  let dark = 0, light = 0, green = 0, greenWidth = 0;
  for (let y = 0; y < img.height; y++) {
    let left = img.width, right = -1;
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 4, r = data[i], g = data[i + 1], b = data[i + 2];
      if (r + g + b < 60) dark++;
      else if (r > 120 && g > 120 && b > 120) light++;
      if (g > 120 && r < 90 && b < 90) {
        green++;
        left = Math.min(left, x);
        right = x;
      }
    }
    greenWidth = Math.max(greenWidth, right - left + 1);
  }
  return {width: img.width, height: img.height, dark: dark, light: light, green: green,
          green_width: greenWidth};
}"""


@dataclass(frozen=True)
class Shot:
    """A screenshot's pixels by kind: the guest's VGA text is light grey on black; what it
    echoes of the keyboard is on green (a colour nothing else on its screen has), and
    `green_width` is the widest green run of one row."""

    png: bytes
    width: int
    height: int
    dark: int
    light: int
    green: int
    green_width: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def shot_of(page: Page, element: Locator) -> Shot:
    png = element.screenshot()
    blank = page.context.new_page()
    try:
        found = blank.evaluate(_CLASSIFY, base64.b64encode(png).decode())
    finally:
        blank.close()
    return Shot(png=png, **found)
