"""What `up` created, written down before each thing is created.

`down` reads it to undo a half-done `up`: an entry is saved before the command
that makes the thing runs, so a crash between the two leaves at worst an entry
for something that does not exist, which `down` skips. Namespace inodes are kept
so processes still inside a namespace are found even after its name is gone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Ledger:
    path: Path
    namespaces: dict[str, int] = field(default_factory=dict)  # name -> nsfs inode (0 until known)
    links: list[str] = field(default_factory=list)  # root-namespace links: the bridge and veth ends
    paths: list[str] = field(default_factory=list)  # files and dirs made outside the state dir

    @classmethod
    def load(cls, path: Path) -> Ledger:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):  # none yet, or cut short by a crash: the sweep covers it
            return cls(path)
        return cls(path, data.get("namespaces", {}), data.get("links", []), data.get("paths", []))

    def add_namespace(self, name: str, inode: int = 0) -> None:
        self.namespaces[name] = inode
        self.save()

    def add_link(self, name: str) -> None:
        if name not in self.links:
            self.links.append(name)
            self.save()

    def add_path(self, path: Path) -> None:
        if str(path) not in self.paths:
            self.paths.append(str(path))
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)  # never a half-written ledger
