"""Natural photographs for inputs and references, taken from an installed package (no download).

scikit-image ships a handful of public-domain / CC0 photographs inside its wheel
(``skimage/data/*.png|jpg``). They give the Activations page, the feature-visualization references and
the dataset-example demos real images instead of only the generated test picture. The files are
located through the package's import spec, so scikit-image itself is never imported; without it
installed the list is simply empty (every caller then falls back to the generated sample).

``photo:NAME`` (e.g. ``photo:chelsea``) is accepted wherever an input image is (see
:func:`inspector.inputs.load_input`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import InputDataError

__all__ = ["PHOTO_NAMES", "PHOTO_PREFIX", "photo_path", "photo_paths"]

PHOTO_PREFIX = "photo:"

#: The photographs used, by name -> file in ``skimage/data``. Colour photos first, then grayscale
#: ones (converted to colour for RGB models like any grayscale image). Chosen for variety: faces,
#: animals, objects, textures, a scene; drawings and synthetic test patterns are left out.
PHOTO_NAMES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",          # a cat
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "hubble": "hubble_deep_field.jpg",
    "camera": "camera.png",            # grayscale: a photographer
    "coins": "coins.png",
    "moon": "moon.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
}


def _data_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


def photo_paths() -> list[Path]:
    """The available photographs in :data:`PHOTO_NAMES` order (empty without scikit-image)."""
    folder = _data_dir()
    if folder is None:
        return []
    return [folder / f for f in PHOTO_NAMES.values() if (folder / f).is_file()]


def photo_path(name: str) -> Path:
    """The file of photograph ``name`` (with or without the ``photo:`` prefix)."""
    key = name.removeprefix(PHOTO_PREFIX)
    if key not in PHOTO_NAMES:
        raise InputDataError(f"unknown photo {key!r}; accepted: {', '.join(PHOTO_NAMES)}. Received: {name}")
    folder = _data_dir()
    path = folder / PHOTO_NAMES[key] if folder is not None else None
    if path is None or not path.is_file():
        raise InputDataError(f"the bundled photographs need scikit-image (pip install 'filter-inspector[run]'); "
                             f"accepted: an image path, a .npy array or 'sample'. Received: {name}")
    return path
