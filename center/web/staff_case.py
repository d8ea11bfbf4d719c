"""Staff pages: a case with its evidence, checks, grade, documents and procedure steps."""

from fastapi import APIRouter

router = APIRouter(tags=["staff"])
