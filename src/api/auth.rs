//! The Auth service (etcd `v3rpc/auth.go`): every call runs as the user its
//! token names, through `server::auth`, and answers with etcd's header.

use tonic::{Request, Response, Status};

use super::caller;
use crate::proto::detcdpb::internal_request::Request as Internal;
use crate::proto::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest,
    AuthEnableResponse, AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest,
    AuthRoleDeleteResponse, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse,
    AuthStatusRequest, AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse,
    AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest,
    AuthenticateResponse, ResponseHeader,
};
use crate::server::{AuthAnswer, Server};

pub struct AuthService {
    pub server: Server,
}

impl AuthService {
    fn header(&self) -> Option<ResponseHeader> {
        let mut header = None;
        self.server.fill_header(&mut header);
        header
    }

    /// A change: the caller's request through raft, answered with a header.
    async fn change<T>(
        &self,
        request: &Request<T>,
        internal: Internal,
    ) -> Result<Option<ResponseHeader>, Status> {
        self.server.refuse_if_learner()?;
        caller(&self.server, request)
            .await?
            .auth_request(internal)
            .await?;
        Ok(self.header())
    }

    /// A query through raft: the names or permissions it answered.
    async fn query<T>(
        &self,
        request: &Request<T>,
        internal: Internal,
    ) -> Result<AuthAnswer, Status> {
        self.server.refuse_if_learner()?;
        Ok(caller(&self.server, request)
            .await?
            .auth_request(internal)
            .await?)
    }
}

fn names(answer: AuthAnswer) -> Vec<String> {
    match answer {
        AuthAnswer::Names(names) => names,
        _ => Vec::new(),
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let internal = Internal::AuthEnable(*request.get_ref());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let internal = Internal::AuthDisable(*request.get_ref());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let (enabled, auth_revision) = caller(&self.server, &request).await?.auth_status()?;
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        self.server.refuse_if_learner()?;
        let login = request.into_inner();
        let token = self.server.authenticate(login.name, login.password).await?;
        Ok(Response::new(AuthenticateResponse {
            header: self.header(),
            token,
        }))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = caller(&self.server, &request).await?;
        let add = request.into_inner();
        let no_password = add.options.is_some_and(|options| options.no_password);
        server.user_add(add.name, add.password, no_password).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let internal = Internal::UserGet(request.get_ref().clone());
        let roles = names(self.query(&request, internal).await?);
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let internal = Internal::UserList(*request.get_ref());
        let users = names(self.query(&request, internal).await?);
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let internal = Internal::UserDelete(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = caller(&self.server, &request).await?;
        let change = request.into_inner();
        server
            .user_change_password(change.name, change.password)
            .await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let internal = Internal::UserGrantRole(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let internal = Internal::UserRevokeRole(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let internal = Internal::RoleAdd(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let internal = Internal::RoleGet(request.get_ref().clone());
        let perm = match self.query(&request, internal).await? {
            AuthAnswer::Permissions(perms) => perms,
            _ => Vec::new(),
        };
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let internal = Internal::RoleList(*request.get_ref());
        let roles = names(self.query(&request, internal).await?);
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let internal = Internal::RoleDelete(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let internal = Internal::RoleGrantPermission(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let internal = Internal::RoleRevokePermission(request.get_ref().clone());
        let header = self.change(&request, internal).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
