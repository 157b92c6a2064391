"""The signed-in user's own API tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from kai.accounts import create_token, list_tokens, revoke_token
from kai.api.dependencies import EditorUser, SessionDep, ViewerUser
from kai.api.schemas.tokens import TokenCreate, TokenCreated, TokenRead

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("")
def list_tokens_route(user: ViewerUser, session: SessionDep) -> list[TokenRead]:
    """The user's tokens, newest first; never their secrets."""
    return [TokenRead.model_validate(token) for token in list_tokens(session, user.id)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token_route(body: TokenCreate, user: EditorUser, session: SessionDep) -> TokenCreated:
    """Issue a token; its secret is in this answer only."""
    grant = create_token(session, user, name=body.name)
    return TokenCreated(token=TokenRead.model_validate(grant.token), secret=grant.secret)


@router.delete("/{token_id}")
def delete_token(token_id: int, user: EditorUser, session: SessionDep) -> TokenRead:
    """Revoke one of the user's tokens."""
    return TokenRead.model_validate(revoke_token(session, user.id, token_id))
