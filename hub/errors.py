"""Errors the hub reports, each with a stable machine-readable code.

Every error response body is JSON::

    {"error": {"code": "version_exists", "message": "...", "details": {...}}}

There is one class, :class:`HubError`: a code from :data:`CODES`, the HTTP status that code
maps to, a message (the code's meaning unless given) and optional details. The statuses::

    400  malformed request bodies, parameters, digests and uploads; a token in the URL
    401  no token, an unknown, revoked or expired one; a wrong password
    403  a token without the scope, or a user without the role, the action needs; a webhook
         signature that does not match; any write to a read-only mirror
    404  also for private packages the caller may not see
    405  a method the path does not take
    409  versions that exist or were deleted, names taken, upload offset mismatch
    413  bodies and uploads over the configured limits
    416  a byte range that cannot be served
    422  well-formed requests whose content breaks a rule
    429  sign-in attempts over the limit (with Retry-After)
    500  an unexpected error (logged)
    502  an upstream hub sent what fails verification (mirrors)
    503  the database, the blob store, the sign-in limiter or every upstream cannot be reached
         (with Retry-After: :data:`RETRY_AFTER` seconds)

Codes are listed in :data:`CODES` with their status and meaning; the OpenAPI document
is generated from the same table, so the two cannot drift apart. :data:`ErrorCode` is the same
set as a type, so ``HubError("not_fuond")`` is a type error (mypy) as well as a ``ValueError``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

#: Every code the hub answers with; :data:`CODES` has exactly these keys (checked below).
ErrorCode = Literal[
    "bad_request", "invalid_json", "too_deep", "invalid_digest", "digest_mismatch", "size_mismatch",
    "incomplete_chunk", "chunk_too_small", "token_in_query", "invalid_range", "unauthenticated",
    "invalid_credentials", "insufficient_scope", "forbidden", "invalid_signature", "read_only", "not_found",
    "user_not_found", "org_not_found", "namespace_not_found", "package_not_found", "version_not_found",
    "file_not_found", "blob_not_found", "upload_not_found", "token_not_found", "repository_not_found",
    "method_not_allowed", "version_exists", "version_deleted", "name_taken", "similar_name_exists",
    "upload_offset_mismatch", "upload_finished", "repository_exists", "name_shadows_upstream",
    "upload_too_large", "body_too_large", "invalid_package_name", "invalid_version", "invalid_manifest",
    "invalid_path", "invalid_files", "missing_blobs", "manifest_mismatch", "invalid_scope", "invalid_field",
    "invalid_repository_url", "bundle_invalid", "upstream_invalid", "upstream_changed", "feed_gap",
    "upstream_unavailable", "storage_unavailable", "database_unavailable", "too_many_attempts",
    "limiter_unavailable", "internal_error",
    "project_not_found", "item_not_found", "project_exists", "stale_revision", "item_leased",
    "nothing_to_snapshot", "no_suggestion_model", "invalid_project", "invalid_labels", "invalid_image",
    "job_not_found", "lease_lost", "job_active", "no_trainer", "invalid_lineage", "invalid_training",
]

#: code -> (HTTP status, meaning). The single source for responses and OpenAPI.
CODES: dict[ErrorCode, tuple[int, str]] = {
    "bad_request": (400, "The request is malformed."),
    "invalid_json": (400, "The body is not the JSON object this endpoint expects."),
    "too_deep": (400, "The JSON body is nested deeper than the hub reads (64 levels); it was refused before parsing."),
    "invalid_digest": (400, "A digest is not 64 lowercase hexadecimal characters."),
    "digest_mismatch": (400, "The uploaded bytes do not hash to the expected sha256."),
    "size_mismatch": (400, "The uploaded bytes do not have the declared size."),
    "incomplete_chunk": (400, "The chunk body ended before its declared length."),
    "chunk_too_small": (400, "The storage backend needs larger non-final chunks."),
    "token_in_query": (400, "An API token was sent in the URL's query string, where logs and browser history keep "
                            "it; send it in the Authorization header, and revoke that token."),
    "invalid_range": (416, "The requested byte range cannot be served."),
    "unauthenticated": (401, "A valid API token is required."),
    "invalid_credentials": (401, "The user name or password is wrong."),
    "insufficient_scope": (403, "The token's scopes do not allow this action."),
    "forbidden": (403, "The user's role does not allow this action."),
    "invalid_signature": (403, "The webhook's signature or secret token does not match the repository's secret."),
    "read_only": (403, "This hub is read-only (a mirror): it serves packages but takes no writes."),
    "not_found": (404, "No such resource."),
    "user_not_found": (404, "No such user."),
    "org_not_found": (404, "No such organisation."),
    "namespace_not_found": (404, "No user or organisation owns this namespace."),
    "package_not_found": (404, "No such package, or it is private."),
    "version_not_found": (404, "No such version of the package."),
    "file_not_found": (404, "The version has no file at this path."),
    "blob_not_found": (404, "The hub has no blob with this digest."),
    "upload_not_found": (404, "No such upload session, or it expired."),
    "token_not_found": (404, "No such token."),
    "repository_not_found": (404, "No such registered git repository, or it may not be seen."),
    "method_not_allowed": (405, "The method is not allowed on this resource."),
    "version_exists": (409, "This version is already published; versions are immutable."),
    "version_deleted": (409, "This version was taken down by an administrator; its number is never used again."),
    "name_taken": (409, "A user or organisation already has this name."),
    "similar_name_exists": (409, "A package whose name differs only in '-', '_', '.' or case exists in this "
                                 "namespace; names are compared as PEP 503 normalises them."),
    "upload_offset_mismatch": (409, "The chunk does not start at the upload's current offset."),
    "upload_finished": (409, "The upload session was already finished."),
    "repository_exists": (409, "This git repository (URL and subdirectory) is already registered."),
    "name_shadows_upstream": (409, "An upstream hub has a package of this name; a local one would shadow it "
                                   "(dependency confusion), which this hub does not allow."),
    "upload_too_large": (413, "The upload is over the configured size limit."),
    "body_too_large": (413, "The request body is over the configured size limit."),
    "invalid_package_name": (422, "The package name breaks the naming rules."),
    "invalid_version": (422, "The version is not SemVer 2.0."),
    "invalid_manifest": (422, "The cvflow.toml manifest is malformed or breaks a rule."),
    "invalid_path": (422, "A file path escapes the package or is not portable."),
    "invalid_files": (422, "The file list is malformed or disagrees with the manifest."),
    "missing_blobs": (422, "Some files' blobs have not been uploaded by the publisher, nor are they in a version "
                           "the publisher may read (the same answer whether or not the hub has them): upload them."),
    "manifest_mismatch": (422, "The manifest text differs from the cvflow.toml file the version ships."),
    "invalid_scope": (422, "A token scope is not recognised."),
    "invalid_field": (422, "A field has a value outside its allowed set."),
    "invalid_repository_url": (422, "The git repository URL is refused: only https, http and git URLs to public "
                                    "addresses are indexed."),
    "bundle_invalid": (422, "The bundle is malformed or its bytes do not match its manifest of digests; "
                            "nothing was imported."),
    "upstream_invalid": (502, "An upstream hub sent bytes or metadata that fail verification (wrong digest, "
                              "wrong size); nothing was stored."),
    "upstream_changed": (502, "An upstream hub now shows different content for a version copied earlier; "
                              "versions are immutable, so the copy is kept."),
    "feed_gap": (502, "The upstream's change feed skips serials or went backwards; the sync stopped there."),
    "upstream_unavailable": (503, "No upstream hub could be reached for something this hub does not hold."),
    "storage_unavailable": (503, "The blob store cannot be reached."),
    "database_unavailable": (503, "The database cannot be reached."),
    "too_many_attempts": (429, "Too many failed sign-in attempts for this user name or address; retry after "
                               "the seconds in Retry-After."),
    "limiter_unavailable": (503, "The sign-in limiter's store cannot be reached; sign-in is refused until it is back."),
    "internal_error": (500, "An unexpected error; the hub logged it."),
    "project_not_found": (404, "No such annotation project, or it is private."),
    "item_not_found": (404, "The project has no item with this id."),
    "project_exists": (409, "The namespace already has an annotation project of this name."),
    "stale_revision": (409, "The item changed since the revision this save started from; the error's details hold the current item, and nothing was saved or lost."),
    "item_leased": (409, "Another annotator holds this item's lease; take the next item from the queue instead."),
    "nothing_to_snapshot": (409, "No item of the project has accepted labels yet, so there is no dataset to publish."),
    "no_suggestion_model": (409, "The project names no suggestion model, or no published version lies in its range."),
    "invalid_project": (422, "The project's settings break a rule (name, task, classes, suggestion model, members)."),
    "invalid_labels": (422, "The labels break a rule: a box outside its image or of no size, an unknown class, a malformed entry."),
    "invalid_image": (422, "The file is not a PNG or JPEG image, or it is larger than the hub accepts (pixels or bytes)."),
    "job_not_found": (404, "No such training job, or it belongs to a project the caller may not see."),
    "lease_lost": (409, "This worker no longer holds the training job's lease (it ran out and the job went back to the queue, or another worker holds it); stop working on it."),
    "job_active": (409, "The project already has a training job queued or running; wait for it to finish."),
    "no_trainer": (422, "The model version declares no trainer for the project's task (or none of the name given)."),
    "invalid_lineage": (422, "The manifest's [lineage] names a base or dataset version that does not exist or that the publisher may not read, or one of the wrong kind."),
    "invalid_training": (422, "The training settings or report break a rule: hyperparameters out of bounds, a result version without this job's lineage, a metric that is not a number."),
}
if set(CODES) != set(get_args(ErrorCode)):  # pragma: no cover - a table edit without the type, or the reverse
    raise AssertionError(f"hub.errors: CODES and ErrorCode differ: {set(CODES) ^ set(get_args(ErrorCode))}")


#: Seconds a client should wait before retrying a 503: the part the hub lacks (database, blob
#: store, limiter, upstreams) is usually back within seconds (a restart, a failover).
RETRY_AFTER = 5


class HubError(Exception):
    """An error with a stable code, shown to the caller as JSON."""

    def __init__(
        self, code: ErrorCode, message: str | None = None, *, details: dict[str, Any] | None = None
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.status = CODES[code][0]
        self.message = message or CODES[code][1]
        self.details = details or {}
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the code calls for: ``Retry-After`` on 503 (something is away for now)."""
        return {"retry-after": str(RETRY_AFTER)} if self.status == 503 else {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def from_validation(exc: Any, code: ErrorCode) -> HubError:
    """Translate a shared-rules ``ValidationError`` into a hub error listing its problems."""
    problems = [
        {"code": p.code, "field": p.field, "message": p.message}
        for p in getattr(exc, "problems", None) or []
    ]
    return HubError(code, str(exc), details={"problems": problems} if problems else None)
