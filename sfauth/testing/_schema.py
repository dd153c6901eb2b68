"""The emulator's schema: sObjects, their fields and relationships, describe bodies.

The standard objects an integration touches first (Account, Contact, Lead, Opportunity, Case,
User, Task, Event, Campaign) come with their common fields; users add custom objects and fields
in code (:meth:`Schema.add_object`, :meth:`Schema.add_field`) or load a describe JSON captured from
their own org (:meth:`Schema.load_describe`: the REST ``/sobjects/{name}/describe`` body, or
``sf sobject describe --json`` output). Field types and attributes follow the REST API's
``DescribeSObjectResult`` / ``DescribeFieldResult`` ("sObject Describe", REST API Developer
Guide).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sfauth.testing._ids import BASE62

__all__ = [
    "FIELD_TYPES",
    "ChildRelationship",
    "FieldSchema",
    "SObjectSchema",
    "Schema",
    "SchemaError",
]

#: Field types the emulator validates and queries (``DescribeFieldResult.type``).
FIELD_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "boolean",
        "int",
        "double",
        "currency",
        "percent",
        "date",
        "datetime",
        "time",
        "picklist",
        "multipicklist",
        "reference",
        "email",
        "phone",
        "url",
        "combobox",
        "encryptedstring",
        "long",
    }
)
#: Types whose values are text.
TEXT_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "reference",
        "email",
        "phone",
        "url",
        "combobox",
        "encryptedstring",
    }
)
NUMBER_TYPES = frozenset({"int", "long", "double", "currency", "percent"})
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CUSTOM_FIELD_RE = re.compile(r"^[A-Za-z](?:[A-Za-z0-9]|_(?!_))*__c$")
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "long": "xsd:long",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
}


_SERIALS = itertools.count(1)


class SchemaError(ValueError):
    """A schema definition or describe JSON is invalid; the message says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class FieldSchema:
    """One field of an sObject (a subset of ``DescribeFieldResult``).

    Attributes:
        name: API name, e.g. ``"AccountId"`` or ``"Amount__c"``.
        type: One of :data:`FIELD_TYPES` (lower-case, as in describe).
        label: Label used in Salesforce's error messages (``"Account ID"``).
        length: Maximum characters of a text value (0: not checked).
        precision: Total digits of a number (0: not checked).
        scale: Digits after the decimal point of a number.
        nillable: Whether the field may be null; a non-nillable, createable field that is not
            defaulted on create is required on insert (``REQUIRED_FIELD_MISSING``).
        createable: Whether an insert may set it.
        updateable: Whether an update may set it.
        defaulted_on_create: Whether Salesforce fills it in when an insert leaves it out.
        external_id: Whether it is an external id (usable for upsert).
        unique: Whether values must be unique (case-insensitive), ``DUPLICATE_VALUE``.
        id_lookup: Whether upsert may match on it (external ids, ``Id``, and a few standard
            fields such as ``Contact.Email``).
        reference_to: Object names a ``reference`` field points at.
        relationship_name: Name of the parent relationship (``"Account"`` for ``AccountId``,
            ``"Parent__r"`` for ``Parent__c``); ``None`` for no relationship.
        child_relationship: Name of the relationship on the parent listing these children
            (``"Contacts"``); ``None`` when the parent has none.
        picklist_values: Active values of a picklist (empty: any value accepted).
        default_value: Value an insert that leaves the field out gets.
        custom: Whether it is a custom field.
        calculated: Whether it is a formula or system-computed field.
    """

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    child_relationship: str | None = None
    picklist_values: tuple[str, ...] = ()
    default_value: object = None
    custom: bool = False
    calculated: bool = False

    @property
    def required(self) -> bool:
        """Whether an insert must set the field (``REQUIRED_FIELD_MISSING`` otherwise)."""
        return (
            self.createable
            and not self.nillable
            and not self.defaulted_on_create
            and self.type != "boolean"
        )

    def describe(self) -> dict[str, object]:
        """Return the field's ``DescribeFieldResult`` as the REST API serialises it."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted_on_create,
            "defaultValue": self.default_value,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.id_lookup,
            "custom": self.custom,
            "calculated": self.calculated,
            "filterable": self.type != "textarea" or self.length <= 255,
            "sortable": self.type not in ("multipicklist", "textarea"),
            "groupable": self.type
            not in ("double", "currency", "percent", "textarea", "datetime"),
            "aggregatable": True,
            "nameField": self.name == "Name",
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "cascadeDelete": False,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in self.picklist_values
            ],
        }


@dataclass(frozen=True, slots=True)
class ChildRelationship:
    """A relationship from a parent object to the children that look it up.

    Attributes:
        relationship_name: Name used in child subqueries (``"Contacts"``).
        child_sobject: The child object (``"Contact"``).
        field: The lookup field on the child (``"AccountId"``).
    """

    relationship_name: str
    child_sobject: str
    field: str


@dataclass(slots=True)
class SObjectSchema:
    """One sObject: its name, key prefix and fields (a subset of ``DescribeSObjectResult``).

    Attributes:
        name: API name, e.g. ``"Account"`` or ``"Invoice__c"``.
        key_prefix: The 3-character id prefix of its records (``"001"``).
        label: Singular label.
        label_plural: Plural label.
        custom: Whether it is a custom object.
        fields: Fields by lower-case name, in describe order.
    """

    name: str
    key_prefix: str
    label: str = ""
    label_plural: str = ""
    custom: bool = False
    fields: dict[str, FieldSchema] = field(default_factory=dict)
    child_relationships: list[ChildRelationship] = field(default_factory=list)

    def field(self, name: str) -> FieldSchema | None:
        """Return the field named ``name`` (case-insensitive), or ``None``.

        Args:
            name: A field API name as a client wrote it.
        """
        return self.fields.get(name.lower())

    def relationship(self, name: str) -> FieldSchema | None:
        """Return the lookup field whose relationship name is ``name`` (case-insensitive).

        Args:
            name: A relationship name, e.g. ``"Owner"`` or ``"Parent__r"``.
        """
        lowered = name.lower()
        for candidate in self.fields.values():
            if candidate.relationship_name and candidate.relationship_name.lower() == lowered:
                return candidate
        return None

    def child(self, name: str) -> ChildRelationship | None:
        """Return the child relationship named ``name`` (case-insensitive), or ``None``.

        Args:
            name: A child relationship name, e.g. ``"Contacts"``.
        """
        lowered = name.lower()
        for candidate in self.child_relationships:
            if candidate.relationship_name.lower() == lowered:
                return candidate
        return None

    def describe(self, version: str) -> dict[str, object]:
        """Return the REST ``/sobjects/{name}/describe`` body.

        Args:
            version: API version of the URLs, e.g. ``"62.0"``.
        """
        body = self.describe_global(version)
        body["fields"] = [f.describe() for f in self.fields.values()]
        body["childRelationships"] = [
            {
                "childSObject": c.child_sobject,
                "field": c.field,
                "relationshipName": c.relationship_name,
                "cascadeDelete": False,
                "deprecatedAndHidden": False,
                "restrictedDelete": False,
            }
            for c in self.child_relationships
        ]
        body["recordTypeInfos"] = []
        return body

    def describe_global(self, version: str) -> dict[str, object]:
        """Return this object's entry of the REST describe-global body.

        Args:
            version: API version of the URLs, e.g. ``"62.0"``.
        """
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "undeletable": True,
            "layoutable": True,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }


# A field spec of the standard objects: (name, type, options). Options: "req" (required),
# "ro" (read-only: neither createable nor updateable), "ins" (createable, not updateable),
# "def" (defaulted on create), "ext" (external id), "uniq", "lookup" (idLookup), length=…,
# precision=…, scale=…, ref=Obj[|Obj], rel=RelName, child=ChildRelName, then default=… and
# values=a;b;c last (both may contain spaces).
_SYSTEM = (
    ("Id", "id", "ro lookup"),
    ("IsDeleted", "boolean", "ro"),
    ("CreatedDate", "datetime", "ro"),
    ("CreatedById", "reference", "ro ref=User rel=CreatedBy"),
    ("LastModifiedDate", "datetime", "ro"),
    ("LastModifiedById", "reference", "ro ref=User rel=LastModifiedBy"),
    ("SystemModstamp", "datetime", "ro"),
)
_OWNER = ("OwnerId", "reference", "def ref=User rel=Owner")
_ADDRESS = ("Street:textarea", "City", "State", "PostalCode", "Country")
_INDUSTRY = (
    "Agriculture;Banking;Chemicals;Communications;Construction;Consulting;Education;"
    "Electronics;Energy;Engineering;Finance;Government;Healthcare;Insurance;Manufacturing;"
    "Media;Retail;Technology;Telecommunications;Transportation;Utilities;Other"
)
_STANDARD: dict[str, tuple[str, str, str, list[tuple[str, str, str]]]] = {
    "User": (
        "005",
        "User",
        "Users",
        [
            ("Username", "string", "req uniq lookup length=80"),
            ("LastName", "string", "req length=80"),
            ("FirstName", "string", "length=40"),
            ("Name", "string", "ro length=121"),
            ("Alias", "string", "def length=8"),
            ("Email", "email", "req length=128"),
            ("CommunityNickname", "string", "def length=40"),
            ("IsActive", "boolean", "def default=true"),
            ("Title", "string", "length=80"),
            ("Department", "string", "length=80"),
            ("CompanyName", "string", "length=80"),
            ("Phone", "phone", "length=40"),
            ("ManagerId", "reference", "ref=User rel=Manager"),
            ("ProfileId", "reference", "def ref=Profile"),
            ("TimeZoneSidKey", "picklist", "def default=GMT"),
            ("LocaleSidKey", "picklist", "def default=en_US"),
            ("LanguageLocaleKey", "picklist", "def default=en_US"),
            ("EmailEncodingKey", "picklist", "def default=UTF-8"),
            ("UserType", "picklist", "ro"),
        ],
    ),
    "Account": (
        "001",
        "Account",
        "Accounts",
        [
            ("Name", "string", "req length=255"),
            ("AccountNumber", "string", "length=40"),
            ("Type", "picklist", "values=Prospect;Customer - Direct;Customer - Channel;Partner"),
            ("Industry", "picklist", "values=" + _INDUSTRY),
            ("AnnualRevenue", "currency", "precision=18 scale=0"),
            ("NumberOfEmployees", "int", "precision=8"),
            ("Rating", "picklist", "values=Hot;Warm;Cold"),
            ("Ownership", "picklist", "values=Public;Private;Subsidiary;Other"),
            ("Phone", "phone", "length=40"),
            ("Fax", "phone", "length=40"),
            ("Website", "url", "length=255"),
            ("Site", "string", "length=80"),
            ("Sic", "string", "length=20"),
            ("AccountSource", "picklist", "values=Web;Phone Inquiry;Partner Referral;Other"),
            ("Description", "textarea", "length=32000"),
            *(("Billing" + a, "", "") for a in _ADDRESS),
            *(("Shipping" + a, "", "") for a in _ADDRESS),
            ("ParentId", "reference", "ref=Account rel=Parent child=ChildAccounts"),
            _OWNER,
            ("LastActivityDate", "date", "ro"),
        ],
    ),
    "Contact": (
        "003",
        "Contact",
        "Contacts",
        [
            ("Salutation", "picklist", "values=Mr.;Ms.;Mrs.;Dr.;Prof."),
            ("FirstName", "string", "length=40"),
            ("LastName", "string", "req length=80"),
            ("Name", "string", "ro length=121"),
            ("AccountId", "reference", "ref=Account rel=Account child=Contacts"),
            ("Title", "string", "length=128"),
            ("Department", "string", "length=80"),
            ("Email", "email", "lookup length=80"),
            ("Phone", "phone", "length=40"),
            ("MobilePhone", "phone", "length=40"),
            ("Birthdate", "date", ""),
            ("LeadSource", "picklist", "values=Web;Phone Inquiry;Partner Referral;Other"),
            ("Description", "textarea", "length=32000"),
            ("HasOptedOutOfEmail", "boolean", "def default=false"),
            ("DoNotCall", "boolean", "def default=false"),
            *(("Mailing" + a, "", "") for a in _ADDRESS),
            ("ReportsToId", "reference", "ref=Contact rel=ReportsTo"),
            _OWNER,
            ("LastActivityDate", "date", "ro"),
        ],
    ),
    "Lead": (
        "00Q",
        "Lead",
        "Leads",
        [
            ("FirstName", "string", "length=40"),
            ("LastName", "string", "req length=80"),
            ("Name", "string", "ro length=121"),
            ("Company", "string", "req length=255"),
            ("Title", "string", "length=128"),
            ("Email", "email", "lookup length=80"),
            ("Phone", "phone", "length=40"),
            (
                "Status",
                "picklist",
                "def default=Open - Not Contacted values=Open - Not Contacted;"
                "Working - Contacted;Closed - Converted;Closed - Not Converted",
            ),
            ("Industry", "picklist", "values=" + _INDUSTRY),
            ("LeadSource", "picklist", "values=Web;Phone Inquiry;Partner Referral;Other"),
            ("Rating", "picklist", "values=Hot;Warm;Cold"),
            ("AnnualRevenue", "currency", "precision=18 scale=0"),
            ("NumberOfEmployees", "int", "precision=8"),
            *((a, "", "") for a in _ADDRESS),
            ("IsConverted", "boolean", "def default=false"),
            ("ConvertedAccountId", "reference", "ro ref=Account rel=ConvertedAccount"),
            ("ConvertedContactId", "reference", "ro ref=Contact rel=ConvertedContact"),
            ("Description", "textarea", "length=32000"),
            _OWNER,
        ],
    ),
    "Campaign": (
        "701",
        "Campaign",
        "Campaigns",
        [
            ("Name", "string", "req length=80"),
            ("Type", "picklist", "values=Conference;Webinar;Email;Advertisement;Other"),
            ("Status", "picklist", "values=Planned;In Progress;Completed;Aborted"),
            ("StartDate", "date", ""),
            ("EndDate", "date", ""),
            ("IsActive", "boolean", "def default=false"),
            ("BudgetedCost", "currency", "precision=18 scale=0"),
            ("ActualCost", "currency", "precision=18 scale=0"),
            ("ExpectedRevenue", "currency", "precision=18 scale=0"),
            ("NumberOfLeads", "int", "ro"),
            ("Description", "textarea", "length=32000"),
            ("ParentId", "reference", "ref=Campaign rel=Parent child=ChildCampaigns"),
            _OWNER,
        ],
    ),
    "Opportunity": (
        "006",
        "Opportunity",
        "Opportunities",
        [
            ("Name", "string", "req length=120"),
            ("AccountId", "reference", "ref=Account rel=Account child=Opportunities"),
            (
                "StageName",
                "picklist",
                "req values=Prospecting;Qualification;Needs Analysis;Proposal;Negotiation;"
                "Closed Won;Closed Lost",
            ),
            ("CloseDate", "date", "req"),
            ("Amount", "currency", "precision=18 scale=2"),
            ("Probability", "percent", "precision=3 scale=0"),
            ("Type", "picklist", "values=New Business;Existing Business"),
            ("LeadSource", "picklist", "values=Web;Phone Inquiry;Partner Referral;Other"),
            ("NextStep", "string", "length=255"),
            ("Description", "textarea", "length=32000"),
            ("IsClosed", "boolean", "ro"),
            ("IsWon", "boolean", "ro"),
            ("CampaignId", "reference", "ref=Campaign rel=Campaign child=Opportunities"),
            _OWNER,
        ],
    ),
    "Case": (
        "500",
        "Case",
        "Cases",
        [
            ("CaseNumber", "string", "ro length=30"),
            ("Subject", "string", "length=255"),
            ("Description", "textarea", "length=32000"),
            ("Status", "picklist", "def default=New values=New;Working;Escalated;Closed"),
            ("Priority", "picklist", "def default=Medium values=High;Medium;Low"),
            ("Origin", "picklist", "values=Phone;Email;Web"),
            ("Type", "picklist", "values=Question;Problem;Feature Request"),
            ("Reason", "picklist", ""),
            ("AccountId", "reference", "ref=Account rel=Account child=Cases"),
            ("ContactId", "reference", "ref=Contact rel=Contact child=Cases"),
            ("ParentId", "reference", "ref=Case rel=Parent child=Cases"),
            ("IsClosed", "boolean", "ro"),
            ("ClosedDate", "datetime", "ro"),
            ("SuppliedEmail", "email", "length=80"),
            ("SuppliedName", "string", "length=80"),
            _OWNER,
        ],
    ),
    "Task": (
        "00T",
        "Task",
        "Tasks",
        [
            ("Subject", "combobox", "length=255"),
            ("ActivityDate", "date", ""),
            (
                "Status",
                "picklist",
                "def default=Not Started values=Not Started;In Progress;Completed;Waiting on "
                "someone else;Deferred",
            ),
            ("Priority", "picklist", "def default=Normal values=High;Normal;Low"),
            ("Description", "textarea", "length=32000"),
            ("WhoId", "reference", "ref=Contact|Lead rel=Who child=Tasks"),
            ("WhatId", "reference", "ref=Account|Opportunity|Case|Campaign rel=What child=Tasks"),
            ("IsClosed", "boolean", "ro"),
            ("TaskSubtype", "picklist", "values=Task;Email;Call"),
            _OWNER,
        ],
    ),
    "Event": (
        "00U",
        "Event",
        "Events",
        [
            ("Subject", "combobox", "length=255"),
            ("StartDateTime", "datetime", ""),
            ("EndDateTime", "datetime", ""),
            ("ActivityDateTime", "datetime", ""),
            ("ActivityDate", "date", ""),
            ("DurationInMinutes", "int", "precision=8"),
            ("IsAllDayEvent", "boolean", "def default=false"),
            ("Location", "string", "length=255"),
            ("Description", "textarea", "length=32000"),
            ("WhoId", "reference", "ref=Contact|Lead rel=Who child=Events"),
            ("WhatId", "reference", "ref=Account|Opportunity|Case|Campaign rel=What child=Events"),
            _OWNER,
        ],
    ),
}


def _label(name: str) -> str:
    """``"NumberOfEmployees"`` → ``"Number Of Employees"``, ``"AccountId"`` → ``"Account ID"``."""
    base = name[:-3] if name.endswith("__c") else name
    if base.endswith("Id") and len(base) > 2:
        base = base[:-2] + " ID"
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ")


def _spec(name: str, type_: str, options: str) -> FieldSchema:
    opts: dict[str, str] = {}
    flags: set[str] = set()
    # values=… may contain spaces: it always comes last in an options string.
    head, _, values = options.partition("values=")
    for word in head.split():
        key, eq, value = word.partition("=")
        if eq:
            opts[key] = value
        else:
            flags.add(key)
    if "default" in opts:  # default=… may contain spaces too: it comes last before values=
        opts["default"] = head.partition("default=")[2].strip()
    default: object = opts.get("default")
    if type_ == "boolean" and default is not None:
        default = default == "true"
    read_only = "ro" in flags
    return FieldSchema(
        name=name,
        type=type_,
        label=_label(name),
        length=int(opts.get("length", 255 if type_ in TEXT_TYPES - {"id", "reference"} else 0)),
        precision=int(opts.get("precision", 0)),
        scale=int(opts.get("scale", 0)),
        nillable=not ("req" in flags or type_ == "boolean" or name in ("Id", "IsDeleted")),
        createable=not read_only,
        updateable=not read_only and "ins" not in flags,
        defaulted_on_create="def" in flags or type_ == "boolean",
        external_id="ext" in flags,
        unique="uniq" in flags,
        id_lookup="lookup" in flags or "ext" in flags,
        reference_to=tuple(opts["ref"].split("|")) if "ref" in opts else (),
        relationship_name=opts.get("rel"),
        child_relationship=opts.get("child"),
        picklist_values=tuple(values.split(";")) if values else (),
        default_value=default,
    )


#: Labels of standard fields that are not their API name split into words; Salesforce's error
#: messages quote labels ("Employees: value not of required type: 1.5").
_LABELS = {
    ("Account", "Name"): "Account Name",
    ("Account", "NumberOfEmployees"): "Employees",
    ("Account", "AccountNumber"): "Account Number",
    ("Account", "Type"): "Account Type",
    ("Account", "Phone"): "Account Phone",
    ("Account", "ParentId"): "Parent Account ID",
    ("Account", "Site"): "Account Site",
    ("Contact", "Name"): "Full Name",
    ("Contact", "ReportsToId"): "Reports To ID",
    ("Lead", "Name"): "Full Name",
    ("Lead", "Status"): "Lead Status",
    ("Lead", "NumberOfEmployees"): "Employees",
    ("Opportunity", "Name"): "Opportunity Name",
    ("Opportunity", "StageName"): "Stage",
    ("Opportunity", "Type"): "Opportunity Type",
    ("Case", "CaseNumber"): "Case Number",
    ("Case", "Origin"): "Case Origin",
    ("Case", "Type"): "Case Type",
    ("Task", "WhoId"): "Name ID",
    ("Task", "WhatId"): "Related To ID",
    ("Event", "WhoId"): "Name ID",
    ("Event", "WhatId"): "Related To ID",
    ("User", "IsActive"): "Active",
}


def _standard_object(name: str) -> SObjectSchema:
    prefix, label, plural, specs = _STANDARD[name]
    sobject = SObjectSchema(name, prefix, label, plural)
    for spec in (*_SYSTEM[:2], *specs, *_SYSTEM[2:]):
        field_name, type_, options = spec
        if not type_:  # an address component: "Street:textarea" or a plain string
            field_name, _, type_ = field_name.partition(":")
            type_ = type_ or "string"
            options = "length=255" if type_ == "string" else ""
        definition = _spec(field_name, type_, options)
        label = _LABELS.get((name, field_name), definition.label)
        sobject.fields[field_name.lower()] = replace(definition, label=label)
    return sobject


class Schema:
    """The sObjects an :class:`~sfauth.testing.Emulator` knows.

    A new schema holds the standard objects Account, Contact, Lead, Opportunity, Case, User,
    Task, Event and Campaign with their common fields. Names are case-insensitive, as in
    Salesforce. Every change bumps :attr:`generation`, so compiled queries are re-checked.
    """

    def __init__(self) -> None:
        self._objects: dict[str, SObjectSchema] = {}
        self._prefixes: dict[str, str] = {}
        self._custom_prefixes = 0
        self._pending_children: list[tuple[str, ChildRelationship]] = []
        #: Unique per schema for the life of the process (caches key on it, not on ``id()``).
        self.serial = next(_SERIALS)
        #: Bumped on every change; caches keyed on it go stale with the schema.
        self.generation = 0
        for name in _STANDARD:
            self._register(_standard_object(name))
        self._link()

    # ------------------------------------------------------------------ lookups

    def get(self, name: str) -> SObjectSchema | None:
        """Return the object named ``name`` (case-insensitive), or ``None``.

        Args:
            name: sObject API name.
        """
        return self._objects.get(name.lower())

    def by_prefix(self, key_prefix: str) -> SObjectSchema | None:
        """Return the object whose records' ids start with ``key_prefix``, or ``None``.

        Args:
            key_prefix: The first 3 characters of a record id.
        """
        name = self._prefixes.get(key_prefix)
        return None if name is None else self._objects[name]

    def __iter__(self) -> Iterator[SObjectSchema]:
        return iter(list(self._objects.values()))

    def names(self) -> list[str]:
        """Return every object's API name, sorted case-insensitively."""
        return sorted((o.name for o in self._objects.values()), key=str.lower)

    # ------------------------------------------------------------------ changes

    def add_object(
        self,
        name: str,
        fields: Mapping[str, str | FieldSchema] | Sequence[FieldSchema] = (),
        *,
        label: str | None = None,
        key_prefix: str | None = None,
    ) -> SObjectSchema:
        """Add a custom object (or replace one of the same name) with Salesforce's system fields.

        The object gets ``Id``, ``Name`` (text, defaulted to the record id when an insert leaves
        it out, as Salesforce does for custom objects), ``OwnerId``, ``IsDeleted``,
        ``CreatedDate``, ``CreatedById``, ``LastModifiedDate``, ``LastModifiedById`` and
        ``SystemModstamp``, plus ``fields``.

        Args:
            name: API name ending in ``__c``, e.g. ``"Invoice__c"``.
            fields: Either ``{field name: type}`` (type one of :data:`FIELD_TYPES`; a
                ``reference`` needs :meth:`add_field` for its target) or :class:`FieldSchema`
                values.
            label: Singular label (default: derived from the name).
            key_prefix: 3-character id prefix (default: the next free one of ``a00``…``a0z``,
                ``a10``…).

        Returns:
            The new object.

        Raises:
            SchemaError: If the name is not a custom object's API name, a field type is
                unknown, or the prefix is malformed or taken.
        """
        if not _NAME_RE.match(name) or not name.endswith("__c") or "___" in name:
            raise SchemaError(
                f"custom object name {name!r} is not valid: use letters, digits and single "
                "underscores, starting with a letter and ending in '__c' (e.g. 'Invoice__c')"
            )
        items = list(
            fields.items() if isinstance(fields, Mapping) else ((f.name, f) for f in fields)
        )
        for field_name, definition in items:
            if not isinstance(definition, FieldSchema) and definition not in FIELD_TYPES:
                raise SchemaError(
                    f"field type {definition!r} of {name}.{field_name} is unknown; use one of "
                    + ", ".join(sorted(FIELD_TYPES))
                )
            if not isinstance(definition, FieldSchema) and definition == "reference":
                raise SchemaError(
                    f"reference field {name}.{field_name} needs its target: add it with "
                    "add_field(..., reference_to=...) after add_object()"
                )
            if not isinstance(definition, FieldSchema) and not _CUSTOM_FIELD_RE.match(field_name):
                raise SchemaError(
                    f"field name {field_name!r} is not a custom field's API name: use letters, "
                    "digits and single underscores, starting with a letter and ending in '__c'"
                )
        existing = self.get(name)
        prefix = key_prefix or (existing.key_prefix if existing else self._next_prefix())
        if existing is not None and prefix != existing.key_prefix:
            raise SchemaError(
                f"{existing.name} has the key prefix {existing.key_prefix!r} already; its "
                "records keep it"
            )
        self._check_prefix(prefix, name)
        sobject = SObjectSchema(
            name, prefix, label or _label(name), (label or _label(name)) + "s", custom=True
        )
        for spec in (
            *_SYSTEM[:2],
            ("Name", "string", "def lookup length=80"),
            _OWNER,
            *_SYSTEM[2:],
        ):
            sobject.fields[spec[0].lower()] = _spec(*spec)
        self._register(sobject)
        for field_name, definition in items:
            if isinstance(definition, FieldSchema):
                self._put_field(sobject, definition)
            else:
                self.add_field(name, field_name, definition)
        self._changed()
        return sobject

    def add_field(
        self,
        sobject: str,
        name: str,
        type: str,
        *,
        label: str | None = None,
        required: bool = False,
        external_id: bool = False,
        unique: bool = False,
        length: int | None = None,
        precision: int = 0,
        scale: int = 0,
        reference_to: str | Sequence[str] = (),
        relationship_name: str | None = None,
        child_relationship: str | None = None,
        picklist_values: Sequence[str] = (),
        updateable: bool = True,
    ) -> FieldSchema:
        """Add a field to an object (standard or custom), replacing one of the same name.

        Args:
            sobject: Object API name.
            name: Field API name; custom fields end in ``__c``.
            type: One of :data:`FIELD_TYPES`.
            label: Label used in error messages (default: derived from the name).
            required: Whether inserts must set it (``REQUIRED_FIELD_MISSING``).
            external_id: An external id: indexed, usable for upsert, unique when ``unique``.
            unique: Values must be unique, compared case-insensitively (``DUPLICATE_VALUE``).
            length: Maximum characters of a text value (default 255 for text types).
            precision: Total digits of a number (0: unchecked).
            scale: Digits after the decimal point.
            reference_to: Target object name(s) of a ``reference`` field.
            relationship_name: Parent relationship name (default: ``Foo__r`` for ``Foo__c``,
                ``Foo`` for ``FooId``).
            child_relationship: Name of the child relationship on the target object, for
                subqueries such as ``(SELECT Id FROM Invoices__r)``.
            picklist_values: Values listed by describe (not enforced: picklists are
                unrestricted).
            updateable: Whether updates may change it.

        Returns:
            The new field.

        Raises:
            SchemaError: If the object is unknown, the name or type is invalid, or a
                reference has no target.
        """
        target = self.get(sobject)
        if target is None:
            raise SchemaError(f"no sObject named {sobject!r}: add it first with add_object()")
        if not _CUSTOM_FIELD_RE.match(name):
            raise SchemaError(
                f"field name {name!r} is not a custom field's API name: use letters, digits and "
                "single underscores, starting with a letter and ending in '__c' (a field you add "
                "is a custom field; standard fields come with the object)"
            )
        if type not in FIELD_TYPES:
            raise SchemaError(
                f"field type {type!r} of {sobject}.{name} is unknown; use one of "
                + ", ".join(sorted(FIELD_TYPES))
            )
        targets = (reference_to,) if isinstance(reference_to, str) else tuple(reference_to)
        if type == "reference" and not targets:
            raise SchemaError(f"reference field {sobject}.{name} needs reference_to=")
        unknown = [t for t in targets if self.get(t) is None]
        if unknown:
            raise SchemaError(
                f"reference field {sobject}.{name} points at {', '.join(unknown)}, which the "
                "schema does not have: add that object first"
            )
        for parent_name in targets:
            parent = self.get(parent_name)
            taken = parent.child(child_relationship) if parent and child_relationship else None
            if taken is not None and (taken.child_sobject, taken.field.lower()) != (
                target.name,
                name.lower(),
            ):
                raise SchemaError(
                    f"{parent_name} already has a child relationship named "
                    f"{taken.relationship_name!r} ({taken.child_sobject}.{taken.field}); "
                    "choose another child_relationship="
                )
        if type == "reference" and relationship_name is None:
            if name.endswith("__c"):
                relationship_name = name[:-3] + "__r"
            elif name.endswith("Id"):
                relationship_name = name[:-2]
        definition = FieldSchema(
            name=name,
            type=type,
            label=label or _label(name),
            length=length
            if length is not None
            else (18 if type in ("id", "reference") else 255 if type in TEXT_TYPES else 0),
            precision=precision,
            scale=scale,
            nillable=not required and type != "boolean",
            updateable=updateable,
            defaulted_on_create=type == "boolean",
            default_value=False if type == "boolean" else None,
            external_id=external_id,
            unique=unique,
            id_lookup=external_id,
            reference_to=targets,
            relationship_name=relationship_name if type == "reference" else None,
            child_relationship=child_relationship,
            picklist_values=tuple(picklist_values),
            custom=name.endswith("__c"),
        )
        self._put_field(target, definition)
        self._changed()
        return definition

    def add_child_relationship(
        self, sobject: str, relationship_name: str, child_sobject: str, field: str
    ) -> ChildRelationship:
        """Name the children that look an object up, for subqueries (``(SELECT … FROM Name)``).

        In a describe, a child relationship's name is listed by the parent
        (``Account``'s ``childRelationships``), not by the child: after loading only a custom
        object's describe, name its lookups' child relationships with this (or load the
        parent's full describe too).

        Args:
            sobject: The parent object, e.g. ``"Account"``.
            relationship_name: The name subqueries use, e.g. ``"Invoices__r"``.
            child_sobject: The child object, e.g. ``"Invoice__c"``.
            field: The child's lookup field to the parent, e.g. ``"Account__c"``.

        Returns:
            The relationship.

        Raises:
            SchemaError: If an object or the field is unknown, the field does not point at
                the parent, or the name is taken.
        """
        parent, child = self.get(sobject), self.get(child_sobject)
        if parent is None or child is None:
            missing = sobject if parent is None else child_sobject
            raise SchemaError(f"no sObject named {missing!r}: add or load it first")
        lookup = child.field(field)
        if lookup is None or parent.name.lower() not in {t.lower() for t in lookup.reference_to}:
            raise SchemaError(f"{child.name}.{field} is not a lookup to {parent.name}")
        taken = parent.child(relationship_name)
        if taken is not None:
            raise SchemaError(
                f"{parent.name} already has a child relationship named {relationship_name!r}"
            )
        relation = ChildRelationship(relationship_name, child.name, lookup.name)
        self._pending_children.append((parent.name, relation))
        self._changed()
        return relation

    def load_describe(
        self,
        source: str | os.PathLike[str] | Mapping[str, object] | Sequence[Mapping[str, object]],
    ) -> list[SObjectSchema]:
        """Load objects from describe JSON captured from an org, replacing objects of those names.

        Accepted shapes: the REST ``/sobjects/{name}/describe`` body; ``sf sobject describe
        --json`` output (``{"status": 0, "result": {...}}``); a JSON list of either. Fields keep
        their ``type``, ``nillable``, ``createable``, ``updateable``, ``defaultedOnCreate``,
        ``externalId``, ``unique``, ``idLookup``, ``length``, ``precision``, ``scale``,
        ``referenceTo``, ``relationshipName`` and ``picklistValues``; ``childRelationships``
        whose child object is known (now or later) become subquery names.

        Args:
            source: A path to a JSON file, or the parsed JSON.

        Returns:
            The objects loaded.

        Raises:
            SchemaError: If the file cannot be read or parsed, a body lacks ``name`` or
                ``fields``, or it would give an object another key prefix than the one its
                records have (nothing is changed then).
        """
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            try:
                data: object = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise SchemaError(f"cannot read describe file {path}: {exc.strerror}") from None
            except ValueError as exc:  # not JSON, not UTF-8, or a number past the digit limit
                raise SchemaError(f"describe file {path} is not JSON: {exc}") from None
        else:
            data = source
        bodies = list(data) if isinstance(data, (list, tuple)) else [data]
        # Every body is checked before any is applied: a bad one changes nothing.
        parsed = [self._from_describe(body) for body in bodies]
        names = [sobject.name.lower() for sobject, _ in parsed]
        prefixes = [sobject.key_prefix for sobject, _ in parsed]
        for index, (sobject, _) in enumerate(parsed):
            if names.index(names[index]) != index or prefixes.index(sobject.key_prefix) != index:
                raise SchemaError(f"the describe lists {sobject.name} or its key prefix twice")
        for sobject, children in parsed:
            existing = self.get(sobject.name)
            if existing is not None:
                self._prefixes.pop(existing.key_prefix, None)
            self._register(sobject)
            self._pending_children.extend((sobject.name, child) for child in children)
        self._changed()
        return [sobject for sobject, _ in parsed]

    # ------------------------------------------------------------------ internals

    def _from_describe(self, body: object) -> tuple[SObjectSchema, list[ChildRelationship]]:
        """Check one describe body; return its object and child relationships, unregistered."""
        if isinstance(body, Mapping) and "status" in body and body.get("status") != 0:
            raise SchemaError(
                "this is an `sf` CLI error, not a describe: "
                f"{body.get('name', '?')}: {body.get('message', '')}".rstrip(": ")
            )
        if isinstance(body, Mapping) and "result" in body and "status" in body:
            body = body["result"]
        if not isinstance(body, Mapping):
            raise SchemaError("a describe body must be a JSON object")
        name, prefix, fields = body.get("name"), body.get("keyPrefix"), body.get("fields")
        if not isinstance(name, str) or not isinstance(fields, list):
            raise SchemaError(
                "a describe body needs 'name' and 'fields' (the REST /sobjects/{name}/describe "
                "body or `sf sobject describe --json` output)"
            )
        if not _NAME_RE.match(name):
            raise SchemaError(f"{name!r} is not an sObject API name")
        existing = self.get(name)
        if not isinstance(prefix, str) or len(prefix) != 3:
            prefix = existing.key_prefix if existing is not None else self._next_prefix()
        if existing is not None and prefix != existing.key_prefix:
            # Records already hold ids with the old prefix; an org never changes it.
            raise SchemaError(
                f"the describe gives {name} the key prefix {prefix!r}, but the emulator's "
                f"{existing.name} has {existing.key_prefix!r}"
            )
        self._check_prefix(prefix, name)
        sobject = SObjectSchema(
            existing.name if existing is not None else name,
            prefix,
            str(body.get("label") or _label(name)),
            str(body.get("labelPlural") or ""),
            custom=bool(body.get("custom", name.endswith("__c"))),
        )
        for raw in fields:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
                raise SchemaError(f"a field of {name}'s describe has no 'name'")
            self._put_field(sobject, _field_from_describe(raw))
        children = body.get("childRelationships")
        relations = [
            ChildRelationship(
                str(child["relationshipName"]),
                str(child.get("childSObject")),
                str(child.get("field")),
            )
            for child in (children if isinstance(children, list) else [])
            if isinstance(child, Mapping) and child.get("relationshipName")
        ]
        return sobject, relations

    def _put_field(self, sobject: SObjectSchema, definition: FieldSchema) -> None:
        if definition.type not in FIELD_TYPES:
            definition = replace(definition, type="string")
        sobject.fields[definition.name.lower()] = definition

    def _register(self, sobject: SObjectSchema) -> None:
        self._objects[sobject.name.lower()] = sobject
        self._prefixes[sobject.key_prefix] = sobject.name.lower()

    def _check_prefix(self, prefix: str, name: str) -> None:
        if len(prefix) != 3 or any(c not in BASE62 for c in prefix):
            raise SchemaError(f"key prefix {prefix!r} must be 3 characters of [0-9A-Za-z]")
        owner = self._prefixes.get(prefix)
        if owner is not None and owner != name.lower():
            raise SchemaError(f"key prefix {prefix!r} is taken by {self._objects[owner].name}")

    def _next_prefix(self) -> str:
        while True:
            number = self._custom_prefixes
            self._custom_prefixes += 1
            prefix = "a" + BASE62[number // 62 % 62] + BASE62[number % 62]
            if prefix not in self._prefixes:
                return prefix

    def _changed(self) -> None:
        self._link()
        self.generation += 1

    def _link(self) -> None:
        """Rebuild every object's child relationships from the lookups that name one."""
        for sobject in self._objects.values():
            sobject.child_relationships = []
        for child in self._objects.values():
            for lookup in child.fields.values():
                if lookup.child_relationship is None:
                    continue
                for target in lookup.reference_to:
                    parent = self.get(target)
                    if parent is not None and parent.child(lookup.child_relationship) is None:
                        parent.child_relationships.append(
                            ChildRelationship(lookup.child_relationship, child.name, lookup.name)
                        )
        for parent_name, relation in self._pending_children:
            loaded = self.get(parent_name)
            described = self.get(relation.child_sobject)
            if loaded is None or described is None or described.field(relation.field) is None:
                continue
            if loaded.child(relation.relationship_name) is None:
                loaded.child_relationships.append(relation)


def _field_from_describe(raw: Mapping[str, object]) -> FieldSchema:
    def number(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    references = raw.get("referenceTo")
    picklist = raw.get("picklistValues")
    name = str(raw["name"])
    default = raw.get("defaultValue")
    if default is None and isinstance(picklist, list):
        # A picklist's default is the value flagged defaultValue (the field's own is null).
        default = next(
            (
                p.get("value")
                for p in picklist
                if isinstance(p, Mapping) and p.get("defaultValue") is True
            ),
            None,
        )
    return FieldSchema(
        name=name,
        type=str(raw.get("type", "string")).lower(),
        label=str(raw.get("label") or _label(name)),
        length=number("length"),
        precision=number("precision"),
        scale=number("scale"),
        nillable=bool(raw.get("nillable", True)),
        createable=bool(raw.get("createable", True)),
        updateable=bool(raw.get("updateable", True)),
        defaulted_on_create=bool(raw.get("defaultedOnCreate", False)),
        external_id=bool(raw.get("externalId", False)),
        unique=bool(raw.get("unique", False)),
        id_lookup=bool(raw.get("idLookup", False)),
        reference_to=tuple(str(r) for r in references) if isinstance(references, list) else (),
        relationship_name=(
            str(raw["relationshipName"]) if isinstance(raw.get("relationshipName"), str) else None
        ),
        picklist_values=tuple(
            str(p["value"])
            for p in (picklist if isinstance(picklist, list) else [])
            if isinstance(p, Mapping) and p.get("active", True) and "value" in p
        ),
        default_value=default,
        custom=bool(raw.get("custom", name.endswith("__c"))),
        calculated=bool(raw.get("calculated", False)),
    )
