"""The config groups a user can pick, read from the YAML files under ``conf/``.

``--help`` lists them (:func:`config_groups_text`; Hydra's own list would include each group's
internal ``schema`` node), and ``model=schema`` is refused (:func:`schema_choice_error`).
"""

from __future__ import annotations

from collections.abc import Mapping

from lora_forecast.paths import config_dir

SCHEMA_NAME = "schema"  # each group's structured-config option (conf/<group>/*.yaml defaults)
HIDDEN_GROUPS = ("hydra", "suite")  # Hydra's own (--hydra-help); the benchmark command's


def group_options() -> dict[str, list[str]]:
    """Each user-facing config group and its options: the YAML files under the config folder."""
    root = config_dir()
    return {
        group.name: sorted(f.stem for f in group.glob("*.yaml"))
        for group in sorted(root.iterdir())
        if group.is_dir() and group.name not in HIDDEN_GROUPS and any(group.glob("*.yaml"))
    }


def config_groups_text() -> str:
    """``--help``'s group list (an OmegaConf resolver in conf/hydra/default.yaml)."""
    lines = []
    for group, options in group_options().items():
        name = f"+{group}" if group == "experiment" else group  # not in the root defaults
        lines.append(f"  {name}: {', '.join(options)}")
    return "\n".join(lines)


def schema_choice_error(choices: Mapping[str, str | None]) -> str | None:
    """The error for ``group=schema`` (an internal structured-config node), else None."""
    for group, choice in choices.items():
        if choice == SCHEMA_NAME and not group.startswith("hydra"):
            options = group_options().get(group, [])
            return (f"{group}: 'schema' is internal, not an option "
                    f"(available: {', '.join(options)})")
    return None
