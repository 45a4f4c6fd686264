"""The operator console: GET /console, one server-rendered page with the operator actions as
buttons (README, "Console")."""

from fastapi import APIRouter

from app.console import actions, routes

router = APIRouter()
router.include_router(routes.router)
router.include_router(actions.router)

__all__ = ["router"]
