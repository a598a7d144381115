"""Which files a search runs on: the paths as given, folders expanded (recursively with --recursive).

Nothing here stops a batch: a path that cannot be a query is reported beside the others, and
what a folder holds that is not an image (or, without --recursive, its subfolders) is counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}


@dataclass
class Inputs:
    """The query files found, in order, and what was passed over."""

    files: list[Path] = field(default_factory=list)
    skipped_folders: int = 0  # subfolders not searched (no --recursive)
    skipped_files: int = 0  # files in folders that are not images

    def skipped(self) -> str:
        """'skipped 2 subfolders (add --recursive to search them) and 3 files that are not images', or ''."""
        parts = []
        if self.skipped_folders:
            parts.append(f"{self.skipped_folders} subfolder{'s' * (self.skipped_folders != 1)} (add --recursive to search {'them' if self.skipped_folders != 1 else 'it'})")
        if self.skipped_files:
            parts.append(f"{self.skipped_files} file{'s' * (self.skipped_files != 1)} that "
                         f"{'are' if self.skipped_files != 1 else 'is'} not {'images' if self.skipped_files != 1 else 'an image'}")
        return "skipped " + " and ".join(parts) if parts else ""


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect(paths: list[Path], recursive: bool = False) -> Inputs:
    """Files as given (each tried, even with an odd name); a folder stands for the image files in it."""
    found = Inputs()
    for path in map(Path, paths):
        if path.is_dir():
            _walk(path, recursive, found, set())
        else:
            found.files.append(path)  # whatever it is, the search reports on it by name
    return found


def _walk(folder: Path, recursive: bool, found: Inputs, seen: set) -> None:
    try:
        st = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        found.files.append(folder)  # unreadable: reported by name when searched
        return
    if (st.st_dev, st.st_ino) in seen:
        return  # a link back up the tree: searched once
    seen.add((st.st_dev, st.st_ino))
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir():
            if recursive:
                _walk(path, recursive, found, seen)
            else:
                found.skipped_folders += 1
        elif entry.is_file() and is_image_name(path):
            found.files.append(path)
        else:
            found.skipped_files += 1
