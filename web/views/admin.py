"""The administrators' page: users, recent yanks and storage use."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.context import ctx, in_session
from hub.models import Blob, Package, Upload, User, Version, YankEvent
from web.session import web_principal
from web.templating import render


async def admin_page(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return RedirectResponse("/login?next=/admin", status_code=303)
    if not who.is_admin:
        return render(request, "error.html", status=403, title="Forbidden", message="Administrators only.")
    hub = ctx(request)

    def work(session: Session) -> dict[str, Any]:
        users = session.exec(select(User).order_by(User.name).limit(500)).all()
        yanks = session.exec(
            select(YankEvent, Version.version, Package.full_name)
            .join(Version, col(Version.id) == YankEvent.version_id)
            .join(Package, col(Package.id) == Version.package_id)
            .order_by(col(YankEvent.created_at).desc()).limit(50)
        ).all()
        blobs, stored = session.exec(select(sa.func.count(), sa.func.coalesce(sa.func.sum(Blob.size), 0))).one()
        uploads = session.exec(select(sa.func.count()).select_from(Upload)).one()
        package_count = session.exec(select(sa.func.count()).select_from(Package)).one()
        return {"users": users, "yanks": yanks, "blob_count": blobs, "stored_bytes": int(stored),
                "open_uploads": uploads, "package_count": package_count, "storage_url": hub.store.url}

    return render(request, "admin.html", **await in_session(request, work))
