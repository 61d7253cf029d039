"""identity.v1.AuthService: convert the request, call one service, convert the result.

RPCs without a method here answer UNIMPLEMENTED (the generated base class)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from identity.api import convert
from identity.api.errors import reason_enum
from identity.api.metadata import IPNetwork, bearer_token, client_info
from identity.domain.errors import Unauthenticated
from identity.domain.models import Principal
from identity.services.account import AccountService
from identity.services.auth import AuthService
from identity.services.history import HistoryService
from identity.services.keys import KeyService
from identity.services.mfa import MfaService
from identity.services.mfa_login import MfaLogin
from identity.services.sessions import SessionService
from identity.services.tokens import TokenService
from identity.v1 import auth_pb2, auth_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        *,
        auth: AuthService,
        tokens: TokenService,
        sessions: SessionService,
        account: AccountService,
        history: HistoryService,
        keys: KeyService,
        mfa: MfaService,
        mfa_login: MfaLogin,
        trusted_proxies: tuple[IPNetwork, ...],
    ) -> None:
        self._auth = auth
        self._tokens = tokens
        self._sessions = sessions
        self._account = account
        self._history = history
        self._keys = keys
        self._mfa = mfa
        self._mfa_login = mfa_login
        self._proxies = trusted_proxies

    async def _caller(self, context: Context) -> Principal:
        return await self._tokens.authenticate(bearer_token(context))

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: Context
    ) -> auth_pb2.RegisterResponse:
        created = await self._auth.register(request.login, request.password, request.email)
        return auth_pb2.RegisterResponse(user=convert.user(created))

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.LoginResponse:
        outcome = await self._auth.login(request.login, request.password, client_info(context, self._proxies))
        return convert.login_response(outcome)

    async def VerifyMfa(
        self, request: auth_pb2.VerifyMfaRequest, context: Context
    ) -> auth_pb2.VerifyMfaResponse:
        verified = await self._mfa_login.verify(
            request.mfa_ticket,
            request.code,
            request.recovery_code,
            client_info(context, self._proxies),
        )
        return convert.verify_mfa_response(verified.tokens, verified.recovery_codes_remaining)

    async def Refresh(self, request: auth_pb2.RefreshRequest, context: Context) -> auth_pb2.RefreshResponse:
        tokens = await self._auth.refresh(request.refresh_token, client_info(context, self._proxies))
        return convert.refresh_response(tokens)

    async def Logout(self, request: auth_pb2.LogoutRequest, context: Context) -> auth_pb2.LogoutResponse:
        await self._auth.logout(await self._caller(context))
        return auth_pb2.LogoutResponse()

    async def LogoutOtherSessions(
        self, request: auth_pb2.LogoutOtherSessionsRequest, context: Context
    ) -> auth_pb2.LogoutOtherSessionsResponse:
        revoked = await self._sessions.logout_others(await self._caller(context))
        return auth_pb2.LogoutOtherSessionsResponse(revoked_count=revoked)

    async def ListSessions(
        self, request: auth_pb2.ListSessionsRequest, context: Context
    ) -> auth_pb2.ListSessionsResponse:
        caller = await self._caller(context)
        page = await self._sessions.list_own(caller, request.page_size, request.page_token)
        return auth_pb2.ListSessionsResponse(
            sessions=[convert.session(s) for s in page.sessions], next_page_token=page.next_page_token
        )

    async def RevokeSession(
        self, request: auth_pb2.RevokeSessionRequest, context: Context
    ) -> auth_pb2.RevokeSessionResponse:
        await self._sessions.revoke_own(await self._caller(context), request.session_id)
        return auth_pb2.RevokeSessionResponse()

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: Context
    ) -> auth_pb2.ChangePasswordResponse:
        revoked = await self._account.change_password(
            await self._caller(context),
            request.current_password,
            request.new_password,
            keep_other_sessions=request.keep_other_sessions,
            client=client_info(context, self._proxies),
        )
        return auth_pb2.ChangePasswordResponse(revoked_count=revoked)

    async def ChangeLogin(
        self, request: auth_pb2.ChangeLoginRequest, context: Context
    ) -> auth_pb2.ChangeLoginResponse:
        changed = await self._account.change_login(
            await self._caller(context),
            request.new_login,
            request.password,
            client_info(context, self._proxies),
        )
        return auth_pb2.ChangeLoginResponse(user=convert.user(changed))

    async def ListLoginHistory(
        self, request: auth_pb2.ListLoginHistoryRequest, context: Context
    ) -> auth_pb2.ListLoginHistoryResponse:
        page = await self._history.list_own(
            await self._caller(context),
            request.page_size,
            request.page_token,
            start=convert.optional_time(request, "start_time"),
            end=convert.optional_time(request, "end_time"),
        )
        return auth_pb2.ListLoginHistoryResponse(
            entries=[convert.history_entry(e) for e in page.entries], next_page_token=page.next_page_token
        )

    async def SetupTotp(
        self, request: auth_pb2.SetupTotpRequest, context: Context
    ) -> auth_pb2.SetupTotpResponse:
        enrolment = await self._mfa.setup(
            await self._caller(context), request.password, client_info(context, self._proxies)
        )
        return convert.totp_enrolment(enrolment)

    async def ConfirmTotp(
        self, request: auth_pb2.ConfirmTotpRequest, context: Context
    ) -> auth_pb2.ConfirmTotpResponse:
        codes = await self._mfa.confirm(
            await self._caller(context), request.code, client_info(context, self._proxies)
        )
        return auth_pb2.ConfirmTotpResponse(recovery_codes=codes)

    async def DisableTotp(
        self, request: auth_pb2.DisableTotpRequest, context: Context
    ) -> auth_pb2.DisableTotpResponse:
        await self._mfa.disable(
            await self._caller(context),
            request.password,
            request.code,
            client_info(context, self._proxies),
        )
        return auth_pb2.DisableTotpResponse()

    async def RegenerateRecoveryCodes(
        self, request: auth_pb2.RegenerateRecoveryCodesRequest, context: Context
    ) -> auth_pb2.RegenerateRecoveryCodesResponse:
        codes = await self._mfa.regenerate_recovery_codes(
            await self._caller(context),
            request.password,
            request.code,
            client_info(context, self._proxies),
        )
        return auth_pb2.RegenerateRecoveryCodesResponse(recovery_codes=codes)

    async def GetJwks(self, request: auth_pb2.GetJwksRequest, context: Context) -> auth_pb2.GetJwksResponse:
        keys = await self._keys.jwks()
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**jwk) for jwk in keys])

    async def ValidateToken(
        self, request: auth_pb2.ValidateTokenRequest, context: Context
    ) -> auth_pb2.ValidateTokenResponse:
        try:
            claims = await self._tokens.validate(request.access_token)
        except Unauthenticated as rejected:
            return auth_pb2.ValidateTokenResponse(valid=False, reason=reason_enum(rejected.reason))
        return auth_pb2.ValidateTokenResponse(valid=True, claims=convert.claims(claims))
