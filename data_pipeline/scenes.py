"""The scene family: objects x containers x tables, built from primitives, and its IND/OOD split.

Paper section 4.1: 20 objects, 2 containers, 2 tables (80 scenes), four tasks. No asset can be
downloaded here, so every object is a primitive (cube, box, sphere, cylinder, capsule) with a colour
and a size, and every object has the readable name instructions use ("the green cylinder").

The out-of-domain split holds (a) objects never seen in training and (b) unseen combinations of seen
objects with seen containers; it is a pure function of a seed and is stored with the data.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

TASKS = ("pick_and_place", "push", "pull", "move_to_target")

COLOURS = {  # RGBA in [0, 1]
    "red": (0.85, 0.12, 0.10, 1.0),
    "green": (0.15, 0.65, 0.20, 1.0),
    "blue": (0.10, 0.25, 0.85, 1.0),
    "yellow": (0.95, 0.80, 0.10, 1.0),
    "purple": (0.55, 0.20, 0.70, 1.0),
    "orange": (0.95, 0.50, 0.10, 1.0),
    "cyan": (0.10, 0.75, 0.80, 1.0),
    "white": (0.92, 0.92, 0.92, 1.0),
    "black": (0.08, 0.08, 0.08, 1.0),
    "pink": (0.95, 0.45, 0.65, 1.0),
}


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """A graspable primitive. `half_size` is (x, y, z) half extents of its bounding box, metres."""

    name: str  # as said in instructions: "green cylinder"
    shape: str  # cube | box | sphere | cylinder | capsule
    colour: str
    half_size: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    name: str  # "plate" | "bin"
    kind: str
    inner_half: float  # half width of the floor that counts as "in" the container, metres
    wall_height: float  # 0 for a flat plate's rim-less floor
    colour: tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class TableSpec:
    name: str
    cloth_colour: tuple[float, float, float, float] | None  # None: the bare wooden table


def _objects() -> tuple[ObjectSpec, ...]:
    """Twenty objects: five shapes, each in four colours, with sizes varied per colour."""
    shapes = {
        "cube": lambda s: (s, s, s),
        "box": lambda s: (1.4 * s, 0.8 * s, 0.7 * s),
        "sphere": lambda s: (s, s, s),
        "cylinder": lambda s: (0.9 * s, 0.9 * s, 1.2 * s),
        "capsule": lambda s: (1.5 * s, 0.8 * s, 0.8 * s),
    }
    palette = {
        "cube": ("red", "green", "blue", "yellow"),
        "box": ("purple", "orange", "cyan", "red"),
        "sphere": ("green", "yellow", "pink", "blue"),
        "cylinder": ("orange", "white", "red", "purple"),
        "capsule": ("cyan", "black", "green", "pink"),
    }
    sizes = (0.020, 0.018, 0.022, 0.019)
    specs = []
    for shape, extent in shapes.items():
        for colour, size in zip(palette[shape], sizes, strict=True):
            specs.append(ObjectSpec(f"{colour} {shape}", shape, colour, extent(size)))
    return tuple(specs)


OBJECTS = _objects()
CONTAINERS = (
    ContainerSpec(
        "plate", "plate", inner_half=0.055, wall_height=0.006, colour=(0.95, 0.95, 0.90, 1.0)
    ),
    ContainerSpec(
        "bin", "bin", inner_half=0.050, wall_height=0.040, colour=(0.35, 0.35, 0.40, 1.0)
    ),
)
TABLES = (TableSpec("wooden table", None), TableSpec("grey table", (0.55, 0.57, 0.60, 1.0)))
MAT_COLOUR = (0.20, 0.45, 0.25, 1.0)
MAT_HALF = 0.05

OBJECT_IDS = {spec.name: i for i, spec in enumerate(OBJECTS)}
TASK_IDS = {task: i for i, task in enumerate(TASKS)}


@dataclasses.dataclass(frozen=True)
class Scene:
    object_id: int
    container_id: int
    table_id: int

    @property
    def object(self) -> ObjectSpec:
        return OBJECTS[self.object_id]

    @property
    def container(self) -> ContainerSpec:
        return CONTAINERS[self.container_id]

    @property
    def table(self) -> TableSpec:
        return TABLES[self.table_id]


def all_scenes() -> list[Scene]:
    return [
        Scene(o, c, t)
        for o, c, t in itertools.product(
            range(len(OBJECTS)), range(len(CONTAINERS)), range(len(TABLES))
        )
    ]


@dataclasses.dataclass(frozen=True)
class SceneSplit:
    seed: int
    unseen_objects: tuple[int, ...]
    unseen_pairs: tuple[tuple[int, int], ...]  # (object_id, container_id) of seen objects

    def split_of(self, scene: Scene) -> str:
        if scene.object_id in self.unseen_objects:
            return "ood"
        if (scene.object_id, scene.container_id) in self.unseen_pairs:
            return "ood"
        return "ind"

    def scenes(self, split: str) -> list[Scene]:
        if split not in ("ind", "ood"):
            raise ValueError(f"unknown split {split!r}: expected 'ind' or 'ood'")
        return [s for s in all_scenes() if self.split_of(s) == split]

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "unseen_objects": [OBJECTS[i].name for i in self.unseen_objects],
            "unseen_pairs": [[OBJECTS[o].name, CONTAINERS[c].name] for o, c in self.unseen_pairs],
        }


def make_split(seed: int = 0, num_unseen_objects: int = 4, num_unseen_pairs: int = 4) -> SceneSplit:
    """Holds out `num_unseen_objects` objects (one per shape at most) and `num_unseen_pairs`
    (seen object, container) combinations, chosen by `seed`."""
    rng = random.Random(seed)
    by_shape: dict[str, list[int]] = {}
    for i, spec in enumerate(OBJECTS):
        by_shape.setdefault(spec.shape, []).append(i)
    shapes = rng.sample(sorted(by_shape), num_unseen_objects)
    unseen = tuple(sorted(rng.choice(by_shape[s]) for s in shapes))
    seen = [i for i in range(len(OBJECTS)) if i not in unseen]
    objects = rng.sample(seen, num_unseen_pairs)
    pairs = tuple(sorted((o, rng.randrange(len(CONTAINERS))) for o in objects))
    return SceneSplit(seed, unseen, pairs)


def instruction(task: str, scene: Scene, rng: random.Random) -> str:
    """An instruction from the task's templates, naming the scene's object and container."""
    obj, container = scene.object.name, scene.container.name
    templates = {
        "pick_and_place": (
            f"pick up the {obj} and place it in the {container}",
            f"put the {obj} into the {container}",
            f"move the {obj} into the {container}",
        ),
        "push": (
            f"push the {obj} forward",
            f"push the {obj} away from the robot",
            f"slide the {obj} forward",
        ),
        "pull": (
            f"pull the {obj} back",
            f"pull the {obj} towards the robot",
            f"drag the {obj} backward",
        ),
        "move_to_target": (
            f"move the {obj} onto the green mat",
            f"put the {obj} on the target mat",
            f"place the {obj} on the green square",
        ),
    }
    if task not in templates:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return rng.choice(templates[task])
