"""Annotation projects: create, find, read, change settings and members."""

from __future__ import annotations

from sqlmodel import Session, select

from hub.errors import HubError
from hub.models import AnnotationItem, AnnotationProject
from hub.services.access import can_read_project
from hub.services.accounts import Principal


def find_project(session: Session, namespace: str, name: str) -> AnnotationProject | None:
    """The project named ``namespace/name`` (case-insensitive), whoever may see it."""
    full = f"{namespace}/{name}".lower()
    return session.exec(select(AnnotationProject).where(AnnotationProject.full_name == full)).first()


def get_project(session: Session, who: Principal, namespace: str, name: str) -> AnnotationProject:
    """The project, if the caller may see it; a private one is "not found" to others."""
    project = find_project(session, namespace, name)
    if project is None or not can_read_project(session, who, project):
        raise HubError("project_not_found", f"no project {namespace}/{name}")
    return project


def get_item(session: Session, project: AnnotationProject, item_id: int) -> AnnotationItem:
    """An item of the project (the caller's access to the project was checked already)."""
    item = session.get(AnnotationItem, item_id)
    if item is None or item.project_id != project.id:
        raise HubError("item_not_found", f"{project.full_name} has no item {item_id}")
    return item
