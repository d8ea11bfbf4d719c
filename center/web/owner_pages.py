"""The owner's pages: a case looked up by plate and the code printed on its notice, its
evidence and deadline, a statement and defence submitted online."""

from fastapi import APIRouter

router = APIRouter(tags=["owner"])
