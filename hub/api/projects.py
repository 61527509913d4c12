"""Annotation projects (docs/annotation.md)."""

from __future__ import annotations

from hub.api._http import Registry

endpoint = Registry()
