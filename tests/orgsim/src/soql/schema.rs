//! The sObjects the emulator serves over SOQL and describe: names, key prefixes, fields with
//! their types and whether they can be filtered, and the parent relationships a field path may
//! follow (`CreatedBy.Username`, `PermissionSet.PermissionsModifyAllData`).

/// The type of a field, for literal checks, comparison and rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Id,
    Text,
    Bool,
    Int,
    DateTime,
    Date,
}

/// One field of an sObject.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: FieldType,
    /// Salesforce lists a `Filter` property for it; a `WHERE` on any other field is refused.
    pub(crate) filterable: bool,
}

/// A lookup to a parent record: `name` is used in paths, `id_field` holds the parent's id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Relationship {
    pub(crate) name: &'static str,
    pub(crate) id_field: &'static str,
    pub(crate) target: &'static str,
}

/// An sObject: API name, labels, key prefix, fields (in groups so objects can share the
/// permission flags) and relationships.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SObject {
    pub(crate) name: &'static str,
    pub(crate) label: &'static str,
    pub(crate) label_plural: &'static str,
    pub(crate) key_prefix: &'static str,
    pub(crate) field_groups: &'static [&'static [Field]],
    pub(crate) relationships: &'static [Relationship],
}

impl SObject {
    /// Every field, in declaration order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &'static Field> + use<> {
        let groups: &'static [&'static [Field]] = self.field_groups;
        groups.iter().flat_map(|g| g.iter())
    }

    /// The field with this name (case-insensitive).
    pub(crate) fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The relationship with this name (case-insensitive).
    pub(crate) fn relationship(&self, name: &str) -> Option<&'static Relationship> {
        self.relationships
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }
}

use FieldType::{Bool, Date, DateTime, Id, Int, Text};

const fn f(name: &'static str, kind: FieldType) -> Field {
    Field {
        name,
        kind,
        filterable: true,
    }
}

/// A field the object reference lists without the `Filter` property.
const fn unfiltered(name: &'static str, kind: FieldType) -> Field {
    Field {
        name,
        kind,
        filterable: false,
    }
}

const fn rel(name: &'static str, id_field: &'static str, target: &'static str) -> Relationship {
    Relationship {
        name,
        id_field,
        target,
    }
}

/// The permission flags Profile and PermissionSet carry, as `Permissions<Name>`; a seed's
/// permission names (`ModifyAllData`, …) set them.
pub(crate) const PERMISSION_FIELDS: &[Field] = &[
    f("PermissionsModifyAllData", Bool),
    f("PermissionsViewAllData", Bool),
    f("PermissionsApiEnabled", Bool),
    f("PermissionsApiUserOnly", Bool),
    f("PermissionsManageUsers", Bool),
    f("PermissionsCustomizeApplication", Bool),
    f("PermissionsViewSetup", Bool),
    f("PermissionsAuthorApex", Bool),
    f("PermissionsModifyMetadata", Bool),
    f("PermissionsManageAuthProviders", Bool),
    f("PermissionsMonitorLoginHistory", Bool),
    f("PermissionsExternalClientAppAdmin", Bool),
    f("PermissionsExternalClientAppDeveloper", Bool),
    f("PermissionsExternalClientAppViewer", Bool),
    f("PermissionsViewClientSecret", Bool),
    f("PermissionsClientSecretRotation", Bool),
    f("PermissionsManageCertificates", Bool),
    f("PermissionsForceTwoFactor", Bool),
];

pub(crate) const ORGANIZATION: SObject = SObject {
    name: "Organization",
    label: "Organization",
    label_plural: "Organizations",
    key_prefix: "00D",
    field_groups: &[&[
        f("Id", Id),
        f("Name", Text),
        f("IsSandbox", Bool),
        f("InstanceName", Text),
        f("OrganizationType", Text),
        f("NamespacePrefix", Text),
        f("TrialExpirationDate", DateTime),
        f("IsReadOnly", Bool),
        f("TimeZoneSidKey", Text),
        f("CreatedDate", DateTime),
    ]],
    relationships: &[],
};

pub(crate) const USER: SObject = SObject {
    name: "User",
    label: "User",
    label_plural: "Users",
    key_prefix: "005",
    field_groups: &[&[
        f("Id", Id),
        f("Username", Text),
        f("Name", Text),
        f("FirstName", Text),
        f("LastName", Text),
        f("Email", Text),
        f("IsActive", Bool),
        f("ProfileId", Id),
        f("UserType", Text),
        f("LastLoginDate", DateTime),
        f("UserRoleId", Id),
        f("FederationIdentifier", Text),
        f("CreatedDate", DateTime),
    ]],
    relationships: &[rel("Profile", "ProfileId", "Profile")],
};

pub(crate) const PROFILE: SObject = SObject {
    name: "Profile",
    label: "Profile",
    label_plural: "Profiles",
    key_prefix: "00e",
    field_groups: &[
        &[
            f("Id", Id),
            f("Name", Text),
            f("UserLicenseId", Id),
            f("UserType", Text),
        ],
        PERMISSION_FIELDS,
    ],
    relationships: &[],
};

pub(crate) const PERMISSION_SET: SObject = SObject {
    name: "PermissionSet",
    label: "Permission Set",
    label_plural: "Permission Sets",
    key_prefix: "0PS",
    field_groups: &[
        &[
            f("Id", Id),
            f("Name", Text),
            f("Label", Text),
            f("IsOwnedByProfile", Bool),
            f("ProfileId", Id),
            f("PermissionSetGroupId", Id),
            f("Type", Text),
            f("LicenseId", Id),
        ],
        PERMISSION_FIELDS,
    ],
    relationships: &[rel("Profile", "ProfileId", "Profile")],
};

pub(crate) const PERMISSION_SET_ASSIGNMENT: SObject = SObject {
    name: "PermissionSetAssignment",
    label: "Permission Set Assignment",
    label_plural: "Permission Set Assignments",
    key_prefix: "0Pa",
    field_groups: &[&[
        f("Id", Id),
        f("AssigneeId", Id),
        f("PermissionSetId", Id),
        f("PermissionSetGroupId", Id),
        f("IsActive", Bool),
        f("ExpirationDate", DateTime),
        f("IsRevoked", Bool),
    ]],
    relationships: &[
        rel("Assignee", "AssigneeId", "User"),
        rel("PermissionSet", "PermissionSetId", "PermissionSet"),
    ],
};

pub(crate) const CONNECTED_APPLICATION: SObject = SObject {
    name: "ConnectedApplication",
    label: "Connected App",
    label_plural: "Connected Apps",
    key_prefix: "0H4",
    field_groups: &[&[
        f("Id", Id),
        f("Name", Text),
        f("CreatedDate", DateTime),
        f("CreatedById", Id),
        f("LastModifiedDate", DateTime),
        f("LastModifiedById", Id),
        f("SystemModstamp", DateTime),
        f("MobileSessionTimeout", Text),
        f("MobileStartUrl", Text),
        f("OptionsAllowAdminApprovedUsersOnly", Bool),
        f("OptionsCodeCredentialGuestEnabled", Bool),
        f("OptionsFullContentPushNotifications", Bool),
        f("OptionsHasSessionLevelPolicy", Bool),
        f("OptionsIsInternal", Bool),
        f("OptionsRefreshTokenValidityMetric", Bool),
        f("OptionsTokenExchangeManageBitEnabled", Bool),
        f("PinLength", Text),
        f("RefreshTokenValidityPeriod", Int),
        f("StartUrl", Text),
        f("UvidTimeout", Text),
    ]],
    relationships: &[
        rel("CreatedBy", "CreatedById", "User"),
        rel("LastModifiedBy", "LastModifiedById", "User"),
    ],
};

pub(crate) const OAUTH_TOKEN: SObject = SObject {
    name: "OauthToken",
    label: "Oauth Token",
    label_plural: "Oauth Tokens",
    key_prefix: "0CQ",
    field_groups: &[&[
        f("Id", Id),
        f("AccessToken", Text),
        f("AppMenuItemId", Id),
        f("AppName", Text),
        f("CreatedDate", DateTime),
        f("DeleteToken", Text),
        f("LastUsedDate", DateTime),
        f("RequestToken", Text),
        f("UseCount", Int),
        f("UserId", Id),
    ]],
    relationships: &[rel("User", "UserId", "User")],
};

pub(crate) const AUTH_SESSION: SObject = SObject {
    name: "AuthSession",
    label: "Auth Session",
    label_plural: "Auth Sessions",
    key_prefix: "0Ak",
    field_groups: &[&[
        f("Id", Id),
        f("UsersId", Id),
        f("CreatedDate", DateTime),
        f("LastModifiedDate", DateTime),
        f("NumSecondsValid", Int),
        f("SessionType", Text),
        f("LoginType", Text),
        f("SourceIp", Text),
        f("UserType", Text),
        f("SessionSecurityLevel", Text),
        f("ParentId", Id),
        f("LoginHistoryId", Id),
        f("LoginGeoId", Id),
        f("IsCurrent", Bool),
        f("LogoutUrl", Text),
        f("IsAssociatedWithJwtAccessToken", Bool),
    ]],
    relationships: &[
        rel("Users", "UsersId", "User"),
        rel("LoginHistory", "LoginHistoryId", "LoginHistory"),
    ],
};

pub(crate) const LOGIN_HISTORY: SObject = SObject {
    name: "LoginHistory",
    label: "Login History",
    label_plural: "Login History",
    key_prefix: "0Ya",
    field_groups: &[&[
        f("Id", Id),
        unfiltered("ApiType", Text),
        unfiltered("ApiVersion", Text),
        unfiltered("Application", Text),
        f("AuthenticationServiceId", Id),
        unfiltered("Browser", Text),
        f("CipherSuite", Text),
        unfiltered("ClientVersion", Text),
        f("CountryIso", Text),
        f("LoginGeoId", Id),
        f("LoginSubType", Text),
        f("LoginTime", DateTime),
        f("LoginType", Text),
        f("LoginUrl", Text),
        f("NetworkId", Id),
        f("OptionsIsGet", Bool),
        f("OptionsIsPost", Bool),
        unfiltered("Platform", Text),
        f("SourceIp", Text),
        unfiltered("Status", Text),
        f("TlsProtocol", Text),
        f("UserId", Id),
    ]],
    relationships: &[],
};

pub(crate) const SETUP_AUDIT_TRAIL: SObject = SObject {
    name: "SetupAuditTrail",
    label: "Setup Audit Trail",
    label_plural: "Setup Audit Trail",
    key_prefix: "0Ym",
    field_groups: &[&[
        f("Id", Id),
        f("Action", Text),
        unfiltered("Section", Text),
        unfiltered("Display", Text),
        f("CreatedDate", DateTime),
        f("CreatedById", Id),
        f("CreatedByContext", Text),
        f("CreatedByIssuer", Text),
        f("DelegateUser", Text),
        f("ResponsibleNamespacePrefix", Text),
    ]],
    relationships: &[rel("CreatedBy", "CreatedById", "User")],
};

/// Every queryable object, in describe-global order.
pub(crate) const OBJECTS: [&SObject; 10] = [
    &AUTH_SESSION,
    &CONNECTED_APPLICATION,
    &LOGIN_HISTORY,
    &OAUTH_TOKEN,
    &ORGANIZATION,
    &PERMISSION_SET,
    &PERMISSION_SET_ASSIGNMENT,
    &PROFILE,
    &SETUP_AUDIT_TRAIL,
    &USER,
];

/// The object with this API name (case-insensitive).
pub(crate) fn object(name: &str) -> Option<&'static SObject> {
    OBJECTS
        .into_iter()
        .find(|o| o.name.eq_ignore_ascii_case(name))
}

/// A field type as the describe call and filter errors name it.
pub(crate) fn type_name(kind: FieldType) -> &'static str {
    match kind {
        Id => "id",
        Text => "string",
        Bool => "boolean",
        Int => "int",
        DateTime => "datetime",
        Date => "date",
    }
}
