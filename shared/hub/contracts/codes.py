"""Coded vocabularies the contracts use: DfE CIN census, Supporting Families, and the hub's own.

Every code carries a human label so that documentation and JSON Schema can show it
(`x-enum-labels`). Member values are the stable codes on the wire; never renumber them.
"""

from enum import StrEnum
from typing import Any, Self

from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema


class LabelledCode(StrEnum):
    """A string code with a human label, declared as `NAME = "code", "label"`."""

    _label: str

    def __new__(cls, code: str, label: str) -> Self:
        member = str.__new__(cls, code)
        member._value_ = code
        member._label = label
        return member

    @property
    def label(self) -> str:
        return self._label

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(handler(core_schema))
        schema["x-enum-labels"] = {member.value: member.label for member in cls}
        return schema


class ReferralSource(LabelledCode):
    """Source of referral (DfE Children in Need census)."""

    FAMILY_MEMBER = "1A", "Individual: family member, relative or carer"
    ACQUAINTANCE = "1B", "Individual: acquaintance (including neighbours and child minders)"
    SELF = "1C", "Individual: self"
    OTHER_INDIVIDUAL = "1D", "Individual: other"
    SCHOOL = "2A", "Schools"
    OTHER_EDUCATION_SERVICE = "2B", "Education services"
    GP = "3A", "Health services: GP"
    HEALTH_VISITOR = "3B", "Health services: health visitor"
    SCHOOL_NURSE = "3C", "Health services: school nurse"
    OTHER_PRIMARY_HEALTH = "3D", "Health services: other primary health services"
    ACCIDENT_AND_EMERGENCY = "3E", "Health services: A&E"
    OTHER_HEALTH = "3F", "Health services: other"
    HOUSING = "4", "Housing (LA housing or housing association)"
    LA_SOCIAL_CARE = "5A", "LA services: social care"
    OTHER_INTERNAL_LA_SERVICE = "5B", "LA services: other internal department"
    EXTERNAL_LA = "5C", "LA services: external, e.g. another local authority"
    EARLY_HELP = "5D", "LA services: early help"
    POLICE = "6", "Police"
    OTHER_LEGAL_AGENCY = "7", "Other legal agency"
    OTHER = "8", "Other (children's centres, voluntary sector)"
    ANONYMOUS = "9", "Anonymous"
    UNKNOWN = "10", "Unknown"


class CinFactor(LabelledCode):
    """Factor identified at the end of assessment (DfE Children in Need census).

    For factors 1-6 the suffix says whose: A the child, B a parent or carer,
    C another person living in the household.
    """

    ALCOHOL_MISUSE_CHILD = "1A", "Alcohol misuse: concerns about the child"
    ALCOHOL_MISUSE_PARENT = "1B", "Alcohol misuse: concerns about a parent or carer"
    ALCOHOL_MISUSE_OTHER = "1C", "Alcohol misuse: concerns about another person in the household"
    DRUG_MISUSE_CHILD = "2A", "Drug misuse: concerns about the child"
    DRUG_MISUSE_PARENT = "2B", "Drug misuse: concerns about a parent or carer"
    DRUG_MISUSE_OTHER = "2C", "Drug misuse: concerns about another person in the household"
    DOMESTIC_ABUSE_CHILD = "3A", "Domestic violence/abuse: concerns about the child"
    DOMESTIC_ABUSE_PARENT = "3B", "Domestic violence/abuse: concerns about a parent or carer"
    DOMESTIC_ABUSE_OTHER = (
        "3C",
        "Domestic violence/abuse: concerns about another person in the household",
    )
    MENTAL_HEALTH_CHILD = "4A", "Mental health: concerns about the child"
    MENTAL_HEALTH_PARENT = "4B", "Mental health: concerns about a parent or carer"
    MENTAL_HEALTH_OTHER = "4C", "Mental health: concerns about another person in the household"
    LEARNING_DISABILITY_CHILD = "5A", "Learning disability: concerns about the child"
    LEARNING_DISABILITY_PARENT = "5B", "Learning disability: concerns about a parent or carer"
    LEARNING_DISABILITY_OTHER = (
        "5C",
        "Learning disability: concerns about another person in the household",
    )
    PHYSICAL_DISABILITY_CHILD = "6A", "Physical disability or illness: concerns about the child"
    PHYSICAL_DISABILITY_PARENT = (
        "6B",
        "Physical disability or illness: concerns about a parent or carer",
    )
    PHYSICAL_DISABILITY_OTHER = (
        "6C",
        "Physical disability or illness: concerns about another person in the household",
    )
    YOUNG_CARER = "7A", "Young carer"
    PRIVATELY_FOSTERED_OVERSEAS_RETURNING = (
        "8B",
        "Privately fostered: overseas children who intend to return",
    )
    PRIVATELY_FOSTERED_OVERSEAS_STAYING = (
        "8C",
        "Privately fostered: overseas children who intend to stay",
    )
    PRIVATELY_FOSTERED_EDUCATIONAL_PLACEMENT = (
        "8D",
        "Privately fostered: UK children in educational placements",
    )
    PRIVATELY_FOSTERED_FAMILY_ARRANGEMENT = (
        "8E",
        "Privately fostered: UK children making alternative family arrangements",
    )
    PRIVATELY_FOSTERED_OTHER = "8F", "Privately fostered: other"
    UNACCOMPANIED_ASYLUM_SEEKING = "9A", "Unaccompanied asylum seeking child"
    MISSING = "10A", "Going/being missing"
    CHILD_SEXUAL_EXPLOITATION = "11A", "Child sexual exploitation"
    TRAFFICKING = "12A", "Trafficking"
    GANGS = "13A", "Gangs"
    SOCIALLY_UNACCEPTABLE_BEHAVIOUR = "14A", "Socially unacceptable behaviour"
    SELF_HARM = "15A", "Self-harm"
    NEGLECT = "16A", "Neglect"
    EMOTIONAL_ABUSE = "17A", "Emotional abuse"
    PHYSICAL_ABUSE_CHILD_ON_CHILD = "18B", "Physical abuse: child on child"
    PHYSICAL_ABUSE_ADULT_ON_CHILD = "18C", "Physical abuse: adult on child"
    SEXUAL_ABUSE_CHILD_ON_CHILD = "19B", "Sexual abuse: child on child"
    SEXUAL_ABUSE_ADULT_ON_CHILD = "19C", "Sexual abuse: adult on child"
    OTHER = "20", "Other"
    NO_FACTORS = "21", "No factors identified"
    FEMALE_GENITAL_MUTILATION = "22A", "Female genital mutilation"
    ABUSE_LINKED_TO_FAITH_OR_BELIEF = "23A", "Abuse linked to faith or belief"
    CHILD_CRIMINAL_EXPLOITATION = "24A", "Child criminal exploitation"


class SupportingFamiliesOutcome(LabelledCode):
    """Headline outcome of the Supporting Families outcomes framework (2022-25)."""

    GOOD_EDUCATION = "good_education", "Getting a good education"
    GOOD_EARLY_YEARS_DEVELOPMENT = "good_early_years_development", "Good early years development"
    IMPROVED_HEALTH = (
        "improved_mental_and_physical_health",
        "Improved mental and physical health",
    )
    SUBSTANCE_USE = (
        "promoting_recovery_and_reducing_harm_from_substance_use",
        "Promoting recovery and reducing harm from substance use",
    )
    IMPROVED_FAMILY_RELATIONSHIPS = (
        "improved_family_relationships",
        "Improved family relationships",
    )
    SAFE_FROM_ABUSE_AND_EXPLOITATION = (
        "children_safe_from_abuse_and_exploitation",
        "Children safe from abuse and exploitation",
    )
    CRIME_PREVENTION = "crime_prevention_and_tackling_crime", "Crime prevention and tackling crime"
    SAFE_FROM_DOMESTIC_ABUSE = "safe_from_domestic_abuse", "Safe from domestic abuse"
    SECURE_HOUSING = "secure_housing", "Secure housing"
    FINANCIAL_STABILITY = "financial_stability", "Financial stability"


class LevelOfNeed(LabelledCode):
    """Level of need on the local threshold framework, lowest first."""

    UNIVERSAL = "universal", "Universal: needs met by universal services"
    UNIVERSAL_PLUS = "universal_plus", "Universal plus: extra support from a universal service"
    EARLY_HELP = "early_help", "Early help: coordinated multi-agency support"
    TARGETED = "targeted", "Targeted: intensive family support from a locality team"
    SPECIALIST = "specialist", "Specialist: statutory social care"


class TriageRoute(LabelledCode):
    """Where the front door sends a referral."""

    SIGNPOST_UNIVERSAL = "signpost_universal", "Signposted to universal services"
    EARLY_HELP = "early_help", "Early help case opened or joined in a locality"
    SOCIAL_CARE = "social_care", "Passed to statutory children's social care"
    NO_FURTHER_ACTION = "no_further_action", "No further action"


class Urgency(LabelledCode):
    """How soon the front door should decide on a referral."""

    ROUTINE = "routine", "Routine"
    URGENT = "urgent", "Urgent: decide within one working day"
    IMMEDIATE = "immediate", "Immediate: risk of harm, decide now"


class PoliceGrade(LabelledCode):
    """How serious the police judged the incident a notification reports."""

    HIGH = "high", "High: the front door decides now"
    MEDIUM = "medium", "Medium: the front door triages it as a referral"
    LOW = "low", "Low: held for information until concerns accumulate"


class MatchField(LabelledCode):
    """What the front door compared when matching a child to someone it already knew."""

    NHS_NUMBER = "nhs_number", "NHS number"
    UPN = "upn", "Unique pupil number"
    GIVEN_NAME = "given_name", "Given name (normalised)"
    FAMILY_NAME = "family_name", "Family name (normalised)"
    DATE_OF_BIRTH = "date_of_birth", "Date of birth"
    POSTCODE = "postcode", "Postcode"


class ClosureReason(LabelledCode):
    """Why an early help case closed."""

    NEEDS_MET = "needs_met", "Needs met"
    STEPPED_UP = "stepped_up", "Stepped up to children's social care"
    MOVED_OUT_OF_AREA = "moved_out_of_area", "Family moved out of the area"
    CONSENT_WITHDRAWN = "consent_withdrawn", "Consent withdrawn"
    DISENGAGED = "disengaged", "Family disengaged"
    TRANSFERRED = "transferred", "Transferred to another service"
    OTHER = "other", "Other"


class ConsentScope(LabelledCode):
    """What a family has agreed the hub and its partners may do."""

    EARLY_HELP_ASSESSMENT = "early_help_assessment", "Carry out an early help assessment"
    REQUEST_INFORMATION = (
        "request_information_from_agencies",
        "Ask other agencies for information about the family",
    )
    SHARE_WITH_PARTNERS = (
        "share_with_partner_agencies",
        "Share information with the agencies working with the family",
    )
    PANEL_DISCUSSION = "panel_discussion", "Discuss the family at a multi-agency panel"
    REFERRER_FEEDBACK = "referrer_feedback", "Tell the referrer what happened to the referral"
    OUTCOMES_REPORTING = (
        "outcomes_reporting",
        "Use the family's outcomes in Supporting Families returns and claims",
    )


class PartnerOrganisationType(LabelledCode):
    """Kind of organisation a partner is."""

    SCHOOL = "school", "School or other education setting"
    HEALTH = "health", "Health (GP, health visiting, school nursing, mental health)"
    POLICE = "police", "Police"
    VOLUNTARY = "voluntary", "Voluntary or community organisation"
    HOUSING = "housing", "Housing provider"
    SOCIAL_CARE = "social_care", "Children's social care"
    LOCAL_AUTHORITY = "local_authority", "Other local authority service"


class DataClassification(LabelledCode):
    """CloudEvents `dataclassification` label that a consumer must honour or refuse."""

    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal to the hub's services"
    CONFIDENTIAL = "confidential", "Confidential"
    RESTRICTED = "restricted", "Restricted: personal data about children and families"


class HouseholdRelationship(LabelledCode):
    """How a household member is related to the children referred."""

    MOTHER = "mother", "Mother"
    FATHER = "father", "Father"
    STEP_PARENT = "step_parent", "Step-parent"
    PARENTS_PARTNER = "parents_partner", "Partner of a parent"
    GRANDPARENT = "grandparent", "Grandparent"
    SIBLING = "sibling", "Sibling (adult or not referred)"
    OTHER_RELATIVE = "other_relative", "Other relative"
    CARER = "carer", "Carer who is not a relative"
    OTHER = "other", "Other household member"


class SupportIntensity(LabelledCode):
    """How much of a service a panel commits to a family."""

    LIGHT_TOUCH = "light_touch", "Light touch: occasional contact"
    STANDARD = "standard", "Standard: regular sessions"
    INTENSIVE = "intensive", "Intensive: several contacts a week"


class ProgressRating(LabelledCode):
    """Progress on one need since the last plan review."""

    WORSE = "worse", "Worse"
    SAME = "same", "No change"
    IMPROVED = "improved", "Improved"
    ACHIEVED = "achieved", "Outcome achieved"


class IncidentLocation(LabelledCode):
    """Where the police attended an incident (Operation Encompass notifications)."""

    CHILDS_HOME = "childs_home", "The child's home"
    OTHER_HOME = "other_home", "Another private address"
    PUBLIC_PLACE = "public_place", "A public place"
    OTHER = "other", "Elsewhere"


class EncompassAlertReason(LabelledCode):
    """Why the front door is alerted about an Operation Encompass notice."""

    NO_SCHOOL = "no_school", "No school known for the child: the front door must find it"
    UNACKNOWLEDGED = "unacknowledged", "The school has not acknowledged it close to its deadline"
