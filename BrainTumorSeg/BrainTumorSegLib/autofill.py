"""Filling the four input selectors from volume names, without ever overriding what the user chose."""

from __future__ import annotations

from braintumorseg.modalities import MODALITIES, is_label_name, modality_from_name


def autofill(current: dict[str, str | None], volumes: list[tuple[str, str]],
             user_chosen: set[str] = frozenset()) -> dict[str, str | None]:
    """New selection (modality → volume id) given the current one and the scene's (id, name) volumes.

    Only empty selectors that the user has not set themselves are filled, each with the first volume whose
    name names that sequence and that is not selected elsewhere.
    """
    selection = {m: current.get(m) for m in MODALITIES}
    taken = {v for v in selection.values() if v}
    for modality in MODALITIES:
        if selection[modality] or modality in user_chosen:
            continue
        for volume_id, name in volumes:
            if volume_id not in taken and not is_label_name(name) and modality_from_name(name) == modality:
                selection[modality] = volume_id
                taken.add(volume_id)
                break
    return selection
