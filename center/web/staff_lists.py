"""Staff pages: the queue with its filters, what falls due, the registers and imports,
devices flagged for review."""

from fastapi import APIRouter

router = APIRouter(tags=["staff"])
