"""Eyewear painted at a face's eye points, at random.

Kinds: "bare" (nothing), "clear" (frames, thin to thick and dark, clear lenses with at most a
faint glare), "dark" (lenses 85-100% opaque), "tint" (lenses 55-80% opaque). Lenses are
superellipses (round to rectangular) sized from the eye distance, tilted with the eye line;
frames, a bridge and temples are drawn around them. Dark and tinted lenses may have a
vertical gradient and a bright reflection, as mirrored and gradient sunglasses do.
"""

import numpy as np

KINDS = ("bare", "clear", "dark", "tint")
LABEL = {"bare": 0, "clear": 0, "dark": 1, "tint": 1}


def _colour(rng, lo, hi):
    """A dark-ish colour: a grey level with a random hue cast (brown, green, blue, grey)."""
    v = rng.uniform(lo, hi)
    cast = rng.choice(4)
    hue = [np.array([1.0, 1.0, 1.0]), np.array([1.25, 1.0, 0.75]), np.array([0.85, 1.15, 0.9]),
           np.array([0.8, 0.95, 1.3])][cast]
    return np.clip(v * hue * rng.uniform(0.9, 1.1, 3), 0, 255)


def _frame_colour(rng):
    r = rng.random()
    if r < 0.5:
        return _colour(rng, 0, 45)  # black / dark tortoise
    if r < 0.7:
        return np.array([rng.uniform(60, 110), rng.uniform(35, 70), rng.uniform(15, 40)])  # brown
    if r < 0.9:
        g = rng.uniform(110, 210)
        return np.array([g, g, g]) * rng.uniform(0.95, 1.05, 3)  # metal
    return rng.uniform(0, 255, 3)  # coloured


def paint(img, eyes, kind, rng):
    """Paints eyewear of `kind` on img (H, W, 3 float32 0-255, modified in place) with the two
    eye points `eyes` (image-left eye, image-right eye)."""
    if kind == "bare":
        return img
    h, w = img.shape[:2]
    le, re = np.asarray(eyes[0], np.float64), np.asarray(eyes[1], np.float64)
    d = max(np.linalg.norm(re - le), 1.0)
    u = (re - le) / d
    n = np.array([-u[1], u[0]])  # points down the face
    mid = (le + re) / 2
    spread = d / 2 * rng.uniform(0.95, 1.12)
    drop = d * rng.uniform(-0.04, 0.1)
    a = d * rng.uniform(0.33, 0.62)  # up to oversized fashion lenses
    b = a * rng.uniform(0.55, 1.0)
    p = rng.uniform(2.0, 5.0)
    soft = rng.uniform(0.6, 1.5)
    thick = d * (rng.uniform(0.08, 0.16) if rng.random() < 0.35 else rng.uniform(0.012, 0.07))
    has_frame = kind == "clear" or rng.random() < 0.75
    # Only a window around the eyes is painted (the rest would be untouched anyway).
    hx = spread + a + thick + 0.55 * d + 2
    hy = b + thick + abs(drop) + 2 + abs(u[1]) * hx
    hx2 = hx + abs(u[1]) * (b + thick + abs(drop))
    x0, x1 = int(max(0, np.floor(mid[0] - hx2))), int(min(w, np.ceil(mid[0] + hx2)))
    y0, y1 = int(max(0, np.floor(mid[1] - hy))), int(min(h, np.ceil(mid[1] + hy)))
    if x1 <= x0 or y1 <= y0:
        return img
    full = img
    img = full[y0:y1, x0:x1]
    h, w = img.shape[:2]
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    px, py = xx - np.float32(mid[0]), yy - np.float32(mid[1])
    along = px * np.float32(u[0]) + py * np.float32(u[1])
    across = px * np.float32(n[0]) + py * np.float32(n[1])

    lens = np.zeros((h, w), np.float32)
    ring = np.zeros((h, w), np.float32)
    for side in (-1, 1):
        x = (along - side * spread) / a
        y = (across - drop) / b
        r = (np.abs(x) ** p + np.abs(y) ** p) ** (1 / p)
        # r is ~ distance / a near the edge, so (1 - r) * a is the distance inside in px.
        lens = np.maximum(lens, np.clip((1 - r) * a / soft + 0.5, 0, 1))
        if has_frame:
            outer = np.clip((1 + thick / a - r) * a / soft + 0.5, 0, 1)
            ring = np.maximum(ring, outer)
    if has_frame:
        ring = np.clip(ring - lens, 0, 1)
        # Bridge between the lenses and temples from their outer edges towards the ears.
        by = drop - b * rng.uniform(0.2, 0.6)
        bt = thick * rng.uniform(0.6, 1.1)
        inner = spread - a
        bridge = (np.abs(along) < inner + 1) & (np.abs(across - by) < bt / 2 + 0.5)
        temple_y = drop - b * rng.uniform(0.3, 0.7)
        reach = spread + a + d * rng.uniform(0.2, 0.5)
        temples = (np.abs(along) > spread + a * 0.9) & (np.abs(along) < reach) & (np.abs(across - temple_y) < bt / 2 + 0.5)
        ring = np.maximum(ring, (bridge | temples).astype(np.float32))

    if kind == "clear":
        glare = rng.uniform(0.0, 0.12)
        col = rng.uniform(200, 255) * np.ones(3)
        alpha = lens * glare * np.clip(0.5 + 0.5 * np.sin(along / d * rng.uniform(2, 6) + rng.uniform(0, 6)), 0, 1)
    else:
        opacity = rng.uniform(0.85, 1.0) if kind == "dark" else rng.uniform(0.55, 0.8)
        col = _colour(rng, 5, 70 if kind == "dark" else 110)
        grad = 1.0
        if rng.random() < 0.3:  # gradient lens: darker at the top
            grad = np.clip(1.0 - (across - drop) / (b * rng.uniform(2, 4)), 0.6, 1.0)
        alpha = lens * opacity * grad
    col_img = np.broadcast_to(col, img.shape)
    img *= 1 - alpha[..., None]
    img += alpha[..., None] * col_img
    if kind in ("dark", "tint") and rng.random() < 0.5:
        # A mirror-like lens: the surroundings (here a shifted, mirrored piece of the same
        # image) seen in the lens, sharp and sometimes bright.
        src = full[::-1] if rng.random() < 0.5 else full[:, ::-1]
        oy, ox = rng.integers(-40, 41, 2)
        piece = np.roll(src, (int(oy), int(ox)), axis=(0, 1))[y0:y1, x0:x1] * rng.uniform(0.6, 1.4)
        ma = lens * rng.uniform(0.2, 0.55)
        img *= 1 - ma[..., None]
        img += ma[..., None] * np.clip(piece, 0, 255)
    if kind in ("dark", "tint") and rng.random() < 0.4:
        # A reflection on the lens (sky, car interior): a soft bright blob.
        cx = mid + u * (rng.choice([-1, 1]) * spread + a * rng.uniform(-0.5, 0.5)) + n * (drop + b * rng.uniform(-0.6, 0.3))
        rad = a * rng.uniform(0.2, 0.7)
        blob = np.exp(-((xx - cx[0]) ** 2 + (yy - cx[1]) ** 2) / (2 * rad ** 2)) * lens
        ba = blob * rng.uniform(0.15, 0.5)
        refl = rng.uniform(120, 255, 3)
        img *= 1 - ba[..., None]
        img += ba[..., None] * refl
    if has_frame:
        fa = ring * rng.uniform(0.85, 1.0)
        fc = _frame_colour(rng)
        img *= 1 - fa[..., None]
        img += fa[..., None] * fc
    return full
