"""Drives the sandbox's HubSpot with HubSpot's own Python client (hubspot-api-client 12),
one call for each route pcsync's HubSpot client uses (adapters/src/hubspot/client.rs),
and the owners list HubSpot's documentation asks for with a trailing slash.

Usage: hubspot_official_client.py BASE_URL TOKEN DEAL_ID COMPANY_ID OPPORTUNITY_ID

The official client refuses answers that miss what its models require, so a call that
returns here was understood as HubSpot's own. Prints what each call returned, as JSON,
for the Rust test (sandbox/tests/official_client.rs) to check against the sandbox's
state; any refusal is an exception and a non-zero exit.
"""

import json
import sys

import hubspot
from hubspot.crm.deals import PublicObjectSearchRequest, SimplePublicObjectInput
from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteInput
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate as TaskInput
from hubspot.crm.properties import PropertyCreate


def main():
    base_url, token, deal_id, company_id, opportunity_id = sys.argv[1:6]
    client = hubspot.Client.create(access_token=token, host=base_url)
    crm = client.crm
    out = {}

    # GET /crm/v3/objects/deals/{id}?archived=false&properties=…
    deal = crm.deals.basic_api.get_by_id(
        deal_id, properties=["dealname", "aws_opportunity_id"], archived=False
    )
    out["get_deal"] = deal.properties

    # PATCH /crm/v3/objects/deals/{id}
    patched = crm.deals.basic_api.update(
        deal_id, SimplePublicObjectInput(properties={"dealname": "Renamed by the official client"})
    )
    out["update_deal"] = patched.properties

    # POST /crm/v3/objects/deals/search: EQ (find_deals), then HAS_PROPERTY sorted by
    # hs_object_id (deals_with).
    found = crm.deals.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                {"filters": [{"propertyName": "aws_opportunity_id", "operator": "EQ", "value": opportunity_id}]}
            ],
            properties=["aws_opportunity_id"],
            limit=100,
        )
    )
    out["find_deals"] = [d.id for d in found.results]
    listed = crm.deals.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[{"filters": [{"propertyName": "aws_opportunity_id", "operator": "HAS_PROPERTY"}]}],
            properties=["aws_opportunity_id"],
            sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            limit=200,
        )
    )
    out["deals_with"] = {"total": listed.total, "ids": [d.id for d in listed.results]}

    # POST /crm/v3/objects/notes and /crm/v3/objects/tasks, associated with the deal.
    note = crm.objects.notes.basic_api.create(
        NoteInput(
            properties={"hs_timestamp": "2026-12-08T10:00:00.000Z", "hs_note_body": "<p>From the official client</p>"},
            associations=[
                {"to": {"id": deal_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}]}
            ],
        )
    )
    out["create_note"] = note.id
    task = crm.objects.tasks.basic_api.create(
        TaskInput(
            properties={
                "hs_timestamp": "2026-12-15T17:00:00.000Z",
                "hs_task_subject": "Follow up",
                "hs_task_body": "<p>Call the buyer</p>",
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hs_task_type": "TODO",
            },
            associations=[
                {"to": {"id": deal_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 216}]}
            ],
        )
    )
    out["create_task"] = task.id

    # GET and POST /crm/v3/properties/deals.
    properties = crm.properties.core_api.get_all("deals")
    out["deal_property_names"] = [p.name for p in properties.results]
    created = crm.properties.core_api.create(
        "deals",
        PropertyCreate(
            name="official_client_check",
            label="Official client check",
            type="string",
            field_type="text",
            group_name="dealinformation",
            description="Made by hubspot-api-client",
        ),
    )
    out["create_deal_property"] = created.name

    # GET /crm/v4/objects/deals/{id}/associations/companies, then the company,
    # GET /crm/v3/objects/companies/{id}; and the other way,
    # GET /crm/v4/objects/companies/{id}/associations/deals.
    companies = crm.associations.v4.basic_api.get_page("deals", deal_id, "companies")
    out["deal_companies"] = [
        {"id": str(r.to_object_id), "types": [t.type_id for t in r.association_types]} for r in companies.results
    ]
    company = crm.companies.basic_api.get_by_id(company_id, properties=["name"], archived=False)
    out["company"] = company.properties
    deals = crm.associations.v4.basic_api.get_page("companies", company_id, "deals")
    out["company_deals"] = [str(r.to_object_id) for r in deals.results]

    # GET /crm/v3/owners/ (HubSpot's documented path, with its trailing slash).
    owners = crm.owners.owners_api.get_page()
    out["owners"] = [o.id for o in owners.results]

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
