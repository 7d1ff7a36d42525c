"""The console's `/references` page: the authentic originals copies are compared with.

Read-only: references are added and removed with `deepwatch reference ...` by whoever holds the
originals (adding one is a claim that it is authentic, which the command line records with its
owner and source).
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from console.deps import Principal, csrf_protect, current

router = APIRouter(dependencies=[Depends(csrf_protect)])


@router.get("/references", include_in_schema=False)
def references_page(request: Request, principal: Principal = Depends(current)) -> Response:
    from console.pages import ctx_of, render
    from storage.references import ReferenceLibrary

    ctx = ctx_of(request)
    rows = [r.to_dict() for r in ReferenceLibrary(ctx.store, ctx.blobs).list()]
    return render(request, "references.html", {"rows": rows})
