#!/usr/bin/env python3
"""Generate pc-model/src/matrix_data.rs from AWS's opportunity field matrix
(`aws-opportunity-fields.csv`, the "Field Name - AWS Partner Selling APIs" sheet) and the
Partner Central Selling service model.

The matrix says, per field, whether a partner-originated CreateOpportunity must carry it
(and on what condition) and in which lifecycle phases UpdateOpportunity may change it.
The generated table keeps those columns verbatim, plus the field's path in the API's own
member names (the matrix writes several of them in older CRM spellings:
`Customer.Account.Address.Country` is the model's `CountryCode`), checked here against
the service model so that a renamed member fails the generator, not a flow.

It also keeps the value lists the model documents in prose but does not enumerate
("Valid values: Alabama | Alaska | …" on `Address.StateOrRegion`), which the service
checks at run time.

The output is committed, so the product works on a machine without the reference files:

    python3 tools/gen_opportunity_fields.py \
        ../shared/reference/aws-opportunity-fields.csv \
        ../shared/reference/partnercentral-selling-service-2.json
"""
import csv
import html
import json
import re
import sys
from pathlib import Path

# The matrix's API field names that differ from the model's member paths.
RENAMED = {
    "AccessControls.NationalSecurity": "NationalSecurity",
    "Customer.Account.Address.Country": "Customer.Account.Address.CountryCode",
    "Customer.Account.AWSAccountId": "Customer.Account.AwsAccountId",
    "TargetCloseDate": "LifeCycle.TargetCloseDate",
    "Project.DeliveryModel": "Project.DeliveryModels",
    "Marketing.ActivityChannels": "Marketing.Channels",
    "Marketing.ActivityUseCases": "Marketing.UseCases",
    "Marketing.AWSFundingUsed": "Marketing.AwsFundingUsed",
    "LifeCycle.StepsHistory": "LifeCycle.NextStepsHistory",
    "PrimaryNeedsFromAWS": "PrimaryNeedsFromAws",
    "Project.ExpectedMonthlyAWSRevenue.Amount": "Project.ExpectedCustomerSpend.Amount",
    "RelatedEntityIdentifiers.AWSProducts": "RelatedEntityIdentifiers.AwsProducts",
    "RelatedEntityIdentifiers.AWSMarketplaceOffers": "RelatedEntityIdentifiers.AwsMarketplaceOffers",
    "Project.APNPrograms": "Project.ApnPrograms",
    "Project.CompetitorNames": "Project.CompetitorName",
    "SoftwareRevenue.Value.Currency": "SoftwareRevenue.Value.CurrencyCode",
    "Customer.Contact.Email": "Customer.Contacts.Email",
    "Customer.Contact.FirstName": "Customer.Contacts.FirstName",
    "Customer.Contact.LastName": "Customer.Contacts.LastName",
    "Customer.Contact.Phone": "Customer.Contacts.Phone",
    "Customer.Contact.Title": "Customer.Contacts.BusinessTitle",
    "PartnerOpportunityContact.PartnerAccountManager.Email": "OpportunityTeam.Email",
    "PartnerOpportunityContact.PartnerAccountManager.FirstName": "OpportunityTeam.FirstName",
    "PartnerOpportunityContact.PartnerAccountManager.LastName": "OpportunityTeam.LastName",
    "PartnerOpportunityContact.PartnerAccountManager.Phone": "OpportunityTeam.Phone",
    "PartnerOpportunityContact.PartnerAccountManager.Title": "OpportunityTeam.BusinessTitle",
}
# Where the matrix's fields live: the create request first (it has OpportunityTeam),
# then what GetOpportunity returns (RelatedEntityIdentifiers, read-only members).
ROOTS = ["CreateOpportunityRequest", "GetOpportunityResponse", "UpdateOpportunityRequest"]
# Member docs that list "Valid values" for a string the model does not enumerate.
DOCUMENTED = [
    ("Address", "StateOrRegion", "Customer.Account.Address.StateOrRegion"),
    ("Project", "CustomerUseCase", "Project.CustomerUseCase"),
    ("Project", "ApnPrograms", "Project.ApnPrograms"),
    ("Marketing", "UseCases", "Marketing.UseCases"),
]
REQUIREMENT = {
    "Mandatory": "Mandatory",
    "Conditionally Mandatory": "Conditional",
    "Optional": "Optional",
    "NA": "NotApplicable",
}


def update(text):
    text = text.strip()
    if text == "Yes":
        return "Update::Yes"
    if text == "No":
        return "Update::No"
    if text == "Yes (ISV Partners Only)":
        return "Update::IsvPartnersOnly"
    if text == "Yes (For special programs)":
        return "Update::SpecialPrograms"
    if text == "#N/A":
        return "Update::NotApplicable"
    raise SystemExit(f"unknown update column value {text!r}")


def resolve(shapes, path):
    for root in ROOTS:
        shape = shapes[root]
        ok = True
        for step in path.split("."):
            if shape["type"] == "list":
                shape = shapes[shape["member"]["shape"]]
            members = shape.get("members", {})
            if step not in members:
                ok = False
                break
            shape = shapes[members[step]["shape"]]
        if ok:
            return True
    return False


def rs(s):
    return json.dumps(s, ensure_ascii=False)


def main(csv_path, model_path, out):
    model = json.loads(Path(model_path).read_text())
    shapes = model["shapes"]
    rows = list(csv.reader(open(csv_path, encoding="utf-8-sig")))
    header = rows[0]
    col = {name: header.index(name) for name in header}
    lines = [
        "// @generated by tools/gen_opportunity_fields.py from AWS's opportunity field matrix",
        "// (aws-opportunity-fields.csv) and the Partner Central Selling service model. Do not",
        "// edit by hand.",
        "use crate::matrix::{FieldRow, Requirement, Update};",
        "",
        "/// Every row of the matrix, in its order.",
        "pub static FIELD_MATRIX: &[FieldRow] = &[",
    ]
    for row in rows[1:]:
        crm = row[col["Field Name - APN CRM JSON Name"]].strip()
        matrix_path = " ".join(row[col["Field Name - AWS Partner Selling APIs"]].split())
        if not crm or matrix_path in ("", "#N/A"):
            continue
        # "A.FirstName A.LastName" rows name two members; keep the first's parent.
        first = matrix_path.split(" ")[0]
        api = RENAMED.get(first, first)
        if first.startswith(("AWSOpportunityTeam.", "AccessControls.Owner.", "AWSSalesLifeCycle.")):
            api = None  # AWS-side or console-only fields: not members a partner sends
        if api is not None and not resolve(shapes, api):
            if first in ("LifeCycle.ApprovalStatus", "LifeCycle.PropensityToBuyScore",
                         "LifeCycle.NextBestActions", "LifeCycle.AcceptBy",
                         "LifeCycle.PartnerAcceptanceStatus", "RejectionReason",
                         "PrimaryNeedsFromAWSChangeReason", "Marketing.CampaignName"):
                api = None  # named by the matrix, absent from this API version
            else:
                raise SystemExit(f"matrix field {first!r} ({crm}) resolves to no model member")
        inbound = REQUIREMENT[row[col["Inbound - Mandatory / Conditionally Mandatory / Optional"]].strip()]
        condition = " ".join(row[col["Conditions when Mandatory (Biz Validation)"]].split())
        validation = " ".join(row[col["Field Validation"]].split())
        label = " ".join(row[col["Name on ACE pipeline Manager"]].split())
        if label in ("", "#N/A"):
            label = crm
        lines.append(
            f"    FieldRow {{ crm_name: {rs(crm)}, label: {rs(label)}, matrix_path: {rs(matrix_path)}, "
            f"api_path: {'None' if api is None else 'Some(' + rs(api) + ')'}, "
            f"inbound: Requirement::{inbound}, condition: {rs(condition)}, "
            f"validation: {rs(validation)}, "
            f"action_required: {update(row[col['Update - Action Required']])}, "
            f"after_launched: {update(row[col['Update - After Launched (Closed Won)']])}, "
            f"until_launched_or_lost: {update(row[col['Updates up until Launched/Lost']])}, "
            f"create: {update(row[col['Create']])} }},"
        )
    lines += ["];", "", "/// Values the service model's documentation lists for members it does not enumerate.",
              "pub static DOCUMENTED_VALUES: &[(&str, &[&str])] = &["]
    for shape, member, path in DOCUMENTED:
        doc = shapes[shape]["members"][member]["documentation"]
        found = re.search(r"Valid values: <code>(.*?)</code>", doc)
        if not found:
            raise SystemExit(f"{shape}.{member}: no valid values in its documentation")
        values = [html.unescape(v.strip()) for v in found.group(1).split(" | ")]
        lines.append(f"    ({rs(path)}, &[{', '.join(rs(v) for v in values)}]),")
    lines += ["];", ""]
    Path(out).write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/aws-opportunity-fields.csv",
         sys.argv[2] if len(sys.argv) > 2 else "../shared/reference/partnercentral-selling-service-2.json",
         sys.argv[3] if len(sys.argv) > 3 else "pc-model/src/matrix_data.rs")
