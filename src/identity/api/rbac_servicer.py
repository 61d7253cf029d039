"""identity.v1.RbacService: convert the request, call one service, convert the result.

Authorization and every rule live in the services (identity.services.rbac for the
admin RPCs, identity.services.authz for the checks)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from identity.api import rbac_convert as convert
from identity.api.metadata import bearer_token
from identity.api.peer import PeerCertificates
from identity.services.authz import AuthzService
from identity.services.rbac import Actor, RoleService
from identity.v1 import rbac_pb2, rbac_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RbacServicer(rbac_pb2_grpc.RbacServiceServicer):
    def __init__(self, *, roles: RoleService, authz: AuthzService, peers: PeerCertificates) -> None:
        self._roles = roles
        self._authz = authz
        # A peer's client certificate stands in for a service key (api/peer.py).
        self._peers = peers

    async def _actor(self, context: Context) -> Actor:
        return await self._roles.actor(bearer_token(context))

    async def CreateRole(
        self, request: rbac_pb2.CreateRoleRequest, context: Context
    ) -> rbac_pb2.CreateRoleResponse:
        given = request.role
        created = await self._roles.create_role(
            await self._actor(context), given.name, given.description, list(given.permissions)
        )
        return rbac_pb2.CreateRoleResponse(role=convert.role(created))

    async def GetRole(self, request: rbac_pb2.GetRoleRequest, context: Context) -> rbac_pb2.GetRoleResponse:
        found = await self._roles.get_role(await self._actor(context), request.role_id)
        return rbac_pb2.GetRoleResponse(role=convert.role(found))

    async def ListRoles(
        self, request: rbac_pb2.ListRolesRequest, context: Context
    ) -> rbac_pb2.ListRolesResponse:
        roles, next_token = await self._roles.list_roles(
            await self._actor(context), request.page_size, request.page_token
        )
        return rbac_pb2.ListRolesResponse(roles=[convert.role(r) for r in roles], next_page_token=next_token)

    async def UpdateRole(
        self, request: rbac_pb2.UpdateRoleRequest, context: Context
    ) -> rbac_pb2.UpdateRoleResponse:
        actor = await self._actor(context)
        updated = await self._roles.update_role(actor, request.role_id, convert.role_patch(request))
        return rbac_pb2.UpdateRoleResponse(role=convert.role(updated))

    async def DeleteRole(
        self, request: rbac_pb2.DeleteRoleRequest, context: Context
    ) -> rbac_pb2.DeleteRoleResponse:
        await self._roles.delete_role(await self._actor(context), request.role_id, request.force)
        return rbac_pb2.DeleteRoleResponse()

    async def AssignRole(
        self, request: rbac_pb2.AssignRoleRequest, context: Context
    ) -> rbac_pb2.AssignRoleResponse:
        actor = await self._actor(context)
        assigned = await self._roles.assign_role(
            actor, request.user_id, request.role_id, convert.expire_time(request)
        )
        return rbac_pb2.AssignRoleResponse(assignment=convert.assignment(assigned))

    async def RevokeRole(
        self, request: rbac_pb2.RevokeRoleRequest, context: Context
    ) -> rbac_pb2.RevokeRoleResponse:
        revoked = await self._roles.revoke_role(await self._actor(context), request.user_id, request.role_id)
        return rbac_pb2.RevokeRoleResponse(revoked=revoked)

    async def ListUserRoles(
        self, request: rbac_pb2.ListUserRolesRequest, context: Context
    ) -> rbac_pb2.ListUserRolesResponse:
        assignments = await self._roles.list_user_roles(await self._actor(context), request.user_id)
        return rbac_pb2.ListUserRolesResponse(assignments=[convert.assignment(a) for a in assignments])

    async def CheckPermission(
        self, request: rbac_pb2.CheckPermissionRequest, context: Context
    ) -> rbac_pb2.CheckPermissionResponse:
        credential = bearer_token(context) or await self._peers.caller(context)
        # A peer's repeated question is answered from memory without a coroutine chain.
        decided = self._authz.cached(credential, request.subject.user_id, request.permission)
        if decided is None:
            decided = await self._authz.check(
                credential, convert.subject(request.subject), request.permission
            )
        return convert.check_response(decided)

    async def CheckPermissions(
        self, request: rbac_pb2.CheckPermissionsRequest, context: Context
    ) -> rbac_pb2.CheckPermissionsResponse:
        decisions = await self._authz.check_many(
            bearer_token(context) or await self._peers.caller(context), convert.checks(request)
        )
        return rbac_pb2.CheckPermissionsResponse(decisions=[convert.decision(d) for d in decisions])

    async def ListUserPermissions(
        self, request: rbac_pb2.ListUserPermissionsRequest, context: Context
    ) -> rbac_pb2.ListUserPermissionsResponse:
        permissions = await self._authz.list_permissions(
            bearer_token(context) or await self._peers.caller(context), convert.subject(request.subject)
        )
        return rbac_pb2.ListUserPermissionsResponse(permissions=convert.effective(permissions))
