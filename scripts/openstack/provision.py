"""Provision a freshly bootstrapped Keystone for kiln's tests.

Run by start.sh with the venv's Python once Keystone answers. Creates three projects
(`alpha`, `beta`, `gamma`) with one member user each (`gamma-user` also has the role
`image_import_only`, which Glance's policy.yaml from start.sh forbids `PUT …/file`: a cloud that
takes image data only through the interoperable import), an application credential for the alpha
user, the `image` service with its endpoints (RegionOne -> the local Glance; RegionTwo ->
a closed port, so region selection is observable), and writes `clouds.yaml` plus
`secure.yaml` (the secrets) into the state directory.

Usage: provision.py STATE_DIR KEYSTONE_URL GLANCE_URL ADMIN_PASSWORD
"""

import json
import os
import sys

import requests
import yaml

state, keystone, glance, admin_password = sys.argv[1:5]
session = requests.Session()
# Endpoints of RegionTwo point at a port nothing listens on (port 9 is discard).
REGION_TWO_GLANCE = "http://127.0.0.1:9"
USER_PASSWORD = "kiln-test-password"


def token(user, password, project):
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"id": "default"}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }
    }
    r = session.post(f"{keystone}/v3/auth/tokens", json=body, timeout=30)
    r.raise_for_status()
    return r.headers["X-Subject-Token"], r.json()["token"]


def call(tok, method, path, body=None):
    r = session.request(
        method, f"{keystone}/v3{path}", json=body, headers={"X-Auth-Token": tok}, timeout=30
    )
    if r.status_code >= 400:
        sys.exit(f"provision: {method} {path} -> {r.status_code} {r.text}")
    return r.json() if r.content else None


admin, _ = token("admin", admin_password, "admin")
roles = {r["name"]: r["id"] for r in call(admin, "GET", "/roles")["roles"]}

call(admin, "POST", "/regions", {"region": {"id": "RegionTwo"}})
service = call(admin, "POST", "/services", {"service": {"type": "image", "name": "glance"}})
for region, url in (("RegionOne", glance), ("RegionTwo", REGION_TWO_GLANCE)):
    for interface in ("public", "internal", "admin"):
        call(admin, "POST", "/endpoints", {
            "endpoint": {
                "service_id": service["service"]["id"],
                "interface": interface,
                "region_id": region,
                "url": url,
            }
        })

roles["image_import_only"] = call(
    admin, "POST", "/roles", {"role": {"name": "image_import_only"}}
)["role"]["id"]

users = {}
for name in ("alpha", "beta", "gamma"):
    project = call(admin, "POST", "/projects", {"project": {"name": name, "domain_id": "default"}})
    user = call(admin, "POST", "/users", {
        "user": {"name": f"{name}-user", "domain_id": "default", "password": USER_PASSWORD}
    })
    pid, uid = project["project"]["id"], user["user"]["id"]
    call(admin, "PUT", f"/projects/{pid}/users/{uid}/roles/{roles['member']}")
    if name == "gamma":
        call(admin, "PUT", f"/projects/{pid}/users/{uid}/roles/{roles['image_import_only']}")
    users[name] = uid

# An application credential belongs to the user and the project its token is scoped to.
alpha_token, _ = token("alpha-user", USER_PASSWORD, "alpha")
appcred = call(alpha_token, "POST", f"/users/{users['alpha']}/application_credentials", {
    "application_credential": {"name": "kiln-tests"}
})["application_credential"]


def password_cloud(user, project, region="RegionOne"):
    return {
        "auth": {
            "auth_url": f"{keystone}/v3",
            "username": user,
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": region,
        "interface": "public",
        "identity_api_version": 3,
    }


clouds = {
    "kiln-admin": password_cloud("admin", "admin"),
    "kiln-alpha": password_cloud("alpha-user", "alpha"),
    "kiln-beta": password_cloud("beta-user", "beta"),
    "kiln-gamma": password_cloud("gamma-user", "gamma"),
    "kiln-alpha-region-two": password_cloud("alpha-user", "alpha", "RegionTwo"),
    "kiln-alpha-appcred": {
        "auth_type": "v3applicationcredential",
        "auth": {"auth_url": f"{keystone}/v3", "application_credential_id": appcred["id"]},
        "region_name": "RegionOne",
        "interface": "public",
        "identity_api_version": 3,
    },
}
# Passwords and the application-credential secret live in secure.yaml only, the way
# os-client-config and openstacksdk expect them to be split.
secure = {
    "kiln-admin": {"auth": {"password": admin_password}},
    "kiln-alpha": {"auth": {"password": USER_PASSWORD}},
    "kiln-beta": {"auth": {"password": USER_PASSWORD}},
    "kiln-gamma": {"auth": {"password": USER_PASSWORD}},
    "kiln-alpha-region-two": {"auth": {"password": USER_PASSWORD}},
    "kiln-alpha-appcred": {"auth": {"application_credential_secret": appcred["secret"]}},
}

for name, doc in (("clouds.yaml", {"clouds": clouds}), ("secure.yaml", {"clouds": secure})):
    path = os.path.join(state, name)
    with open(path + ".tmp", "w") as f:
        yaml.safe_dump(doc, f, sort_keys=True)
    os.chmod(path + ".tmp", 0o600)
    os.rename(path + ".tmp", path)

with open(os.path.join(state, "provision.json"), "w") as f:
    json.dump({"users": users, "application_credential_id": appcred["id"]}, f)
