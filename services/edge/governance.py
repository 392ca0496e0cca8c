"""Which limits apply to a request: its key's, its user's and its project's (the strictest
of each applies, since a request must fit all three). Users' and projects' limits come from
keyvault's buckets, mirrored in memory like the client keys."""

from __future__ import annotations

from pydantic import ValidationError

from services.edge.auth import Principal
from shared.bus import Bus, KVMirror
from shared.limits import NO_LIMITS, Limits, Scope
from shared.messages import Project, UserRecord
from shared.subjects import PROJECTS_BUCKET, USERS_BUCKET


class LimitBook:
    def __init__(self, bus: Bus) -> None:
        self.users: dict[str, Limits] = {}
        self.projects: dict[str, Limits] = {}
        self.user_mirror = KVMirror(bus, USERS_BUCKET, self._set_users)
        self.project_mirror = KVMirror(bus, PROJECTS_BUCKET, self._set_projects)

    def _set_users(self, entries: dict[str, bytes]) -> None:
        self.users = _limits(entries, UserRecord)

    def _set_projects(self, entries: dict[str, bytes]) -> None:
        self.projects = _limits(entries, Project)

    def scopes(self, principal: Principal) -> list[tuple[Scope, str, Limits]]:
        """The scopes of a request that have any limit, key first."""
        if principal.role == "admin":
            return []
        out: list[tuple[Scope, str, Limits]] = []
        if principal.limits.any:
            out.append(("key", principal.key_id, principal.limits))
        user = self.users.get(principal.user, NO_LIMITS)
        if user.any:
            out.append(("user", principal.user, user))
        if principal.project is not None:
            project = self.projects.get(principal.project, NO_LIMITS)
            if project.any:
                out.append(("project", principal.project, project))
        return out


def _limits(entries: dict[str, bytes], model: type[UserRecord] | type[Project]) -> dict[str, Limits]:
    out: dict[str, Limits] = {}
    for raw in entries.values():
        try:
            record = model.model_validate_json(raw)
        except ValidationError:
            continue
        limits = record.limits()
        if limits.any:
            out[record.name] = limits
    return out
