"""The machine-readable catalogue: ``/v1/models`` in the shape of OpenAI's models API.

A client written for OpenAI's ``client.models.list()`` / ``.retrieve(id)`` works unchanged;
Vitrine's fields (organisation, task, status, exact prices, links) extend each model object.
Prices are exact decimal strings ("0.0000075"), never JSON numbers: a float cannot hold
them and clients must not round them.
"""

from __future__ import annotations

import calendar
from decimal import Decimal

from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import errors, lifecycle, selectors
from catalog.models import ModelCard, PriceRoute, Status
from catalog.paths import card_path
from catalog.pricing import price_with_fee

NOT_JSON = "The Accept header refuses JSON, the only type the API answers."

DECIMAL_STRING_SCHEMA = {
    "type": "string",
    "format": "decimal",
    "pattern": r"^\d+(\.\d+)?$",
    "description": "USD, an exact decimal string; parse it with a decimal type, not a float.",
}


def decimal_string(amount: Decimal) -> str:
    """Exact and without trailing zeros: Decimal("0.0000075000") -> "0.0000075"."""
    return f"{amount.normalize():f}"


def unix_seconds(card: ModelCard) -> int:
    """OpenAI's ``created``: the launch date, else the weights' publication date, else the
    card's creation on Vitrine (OpenRouter's ``created`` is its listing's), as Unix seconds
    (dates at 00:00 UTC). The field's help text says so to API users."""
    day = card.launch_date or card.published_on
    if day is not None:
        return calendar.timegm(day.timetuple())
    return int(card.created_at.timestamp())


@extend_schema_field(DECIMAL_STRING_SCHEMA)
class DecimalStringField(serializers.Field):
    def to_representation(self, value: Decimal) -> str:
        return decimal_string(value)


@extend_schema_serializer(component_name="ModelOrganisation")
class OrganisationOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()
    url = serializers.CharField(help_text="The organisation's site; empty when unknown.")


@extend_schema_serializer(component_name="ModelPriceRoute")
class PriceRouteOutputSerializer(serializers.Serializer):
    route = serializers.CharField(source="slug", help_text="e.g. vitrine, cloudflare")
    provider = serializers.CharField()
    unit = serializers.ChoiceField(choices=PriceRoute.Unit.choices)
    price = DecimalStringField(help_text="USD per unit, pass-through.")
    price_per_1k = DecimalStringField(help_text="USD per 1,000 units.")
    price_with_fee = serializers.SerializerMethodField(
        help_text=(
            "USD per unit once the 5% top-up fee paid for the credit is counted; null on a "
            "provider's route, which runs on your own key: paid to the provider, no fee."
        )
    )
    estimated = serializers.BooleanField(source="is_estimate", help_text="Set at launch.")
    beta = serializers.BooleanField(source="is_beta")
    byok = serializers.BooleanField(
        source="byok_available", help_text="Callable with your own provider key (no charge)."
    )

    @extend_schema_field({**DECIMAL_STRING_SCHEMA, "nullable": True})
    def get_price_with_fee(self, route: PriceRoute) -> str | None:
        if not route.is_own:  # never from the wallet, so no credit (and no fee) pays for it
            return None
        return decimal_string(price_with_fee(route.price))


@extend_schema_serializer(component_name="ModelReplacement")
class ReplacementOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="<organisation>/<name> of the successor model.")
    url = serializers.URLField(help_text="Its /v1/models resource.")


@extend_schema_serializer(component_name="ModelLinks")
class LinksOutputSerializer(serializers.Serializer):
    html = serializers.URLField(help_text="The model's page.")
    api = serializers.URLField(help_text="This resource.")


class ModelDetailApi(APIView):
    """One published model by id."""

    @extend_schema_serializer(component_name="Model")
    class OutputSerializer(serializers.Serializer):
        id = serializers.CharField(source="model_id", help_text="<organisation>/<name>")
        object = serializers.SerializerMethodField()
        created = serializers.SerializerMethodField(
            help_text="Unix seconds (00:00 UTC of the day): the model's launch date on Vitrine, "
            "else the date its weights were first published; a model with neither gives the "
            "time its entry was created in Vitrine's catalogue (as OpenRouter's `created` is)."
        )
        owned_by = serializers.CharField(source="organisation.slug")
        name = serializers.CharField(source="display_name")
        organisation = OrganisationOutputSerializer()
        task = serializers.CharField(source="task.slug")
        modalities = serializers.ListField(child=serializers.CharField())
        status = serializers.ChoiceField(
            choices=Status.choices,
            help_text="A deprecated model reads as retired from its sunset date on, when its "
            "calls start answering 410 model_retired.",
        )
        deprecation_date = serializers.DateField(
            allow_null=True, help_text="When it was deprecated (also the Deprecation header)."
        )
        sunset_date = serializers.DateField(
            allow_null=True, help_text="When it stops answering: 410 from then on (Sunset)."
        )
        replacement = serializers.SerializerMethodField(
            help_text="The model to move to (Link rel=successor-version); null if none."
        )
        summary = serializers.CharField()
        license = serializers.CharField(help_text="SPDX id; empty when unknown.")
        open_weight = serializers.BooleanField()
        parameters = serializers.IntegerField(allow_null=True)
        pricing = PriceRouteOutputSerializer(source="routes.all", many=True)
        links = serializers.SerializerMethodField()

        def to_representation(self, card: ModelCard) -> dict:
            data = super().to_representation(card)
            # What its calls and /pricing say: a deprecated model past its sunset answers
            # 410, so it reads as retired here too, also before an operator sets it so.
            data["status"] = lifecycle.card_status(card)
            if not card.is_sunsetting:
                # As the Deprecation and Sunset headers and the page: only a deprecated or
                # retired model has these. A card moved back to live kept the date its
                # deprecation recorded, and the sunset typed then, and was answered as a
                # live model that stops answering on that day.
                data["deprecation_date"] = data["sunset_date"] = None
            return data

        def get_object(self, card: ModelCard) -> str:
            return "model"

        def get_created(self, card: ModelCard) -> int:
            return unix_seconds(card)

        @extend_schema_field(ReplacementOutputSerializer(allow_null=True))
        def get_replacement(self, card: ModelCard) -> dict[str, str] | None:
            if card.replacement_id is None:
                return None
            model_id = card.replacement.model_id
            path = reverse("catalog_api:model-detail", kwargs={"model_id": model_id})
            return {"id": model_id, "url": self.context["request"].build_absolute_uri(path)}

        @extend_schema_field(LinksOutputSerializer)
        def get_links(self, card: ModelCard) -> dict[str, str]:
            request = self.context["request"]
            api_path = reverse("catalog_api:model-detail", kwargs={"model_id": card.model_id})
            return {
                "html": request.build_absolute_uri(card_path(card)),
                "api": request.build_absolute_uri(api_path),
            }

    @extend_schema(
        operation_id="models_retrieve",
        summary="Retrieve a model",
        description=(
            "The id holds a slash (`facebook/detr-resnet-50`); it may be sent as is or "
            "percent-encoded (`facebook%2Fdetr-resnet-50`), as OpenAI's clients do."
        ),
        parameters=[
            OpenApiParameter(
                "model_id",
                str,
                OpenApiParameter.PATH,
                description="<organisation>/<name>, e.g. facebook/detr-resnet-50",
            ),
            *[
                OpenApiParameter(
                    name, str, OpenApiParameter.HEADER, description=text, response=[200]
                )
                for name, text in lifecycle.LIFECYCLE_HEADERS.items()
            ],
        ],
        tags=["models"],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(errors.ErrorSerializer, "A query parameter (it takes none)."),
            404: OpenApiResponse(errors.ErrorSerializer, "No published model has this id."),
            405: OpenApiResponse(errors.ErrorSerializer, "Only GET is allowed."),
            406: OpenApiResponse(errors.ErrorSerializer, NOT_JSON),
        },
        examples=[
            OpenApiExample(
                "Unknown model",
                status_codes=["404"],
                response_only=True,
                value={
                    "error": {
                        "message": errors.MODEL_NOT_FOUND.format(model_id="acme/nope"),
                        "type": errors.NOT_FOUND_ERROR,
                        "code": "model_not_found",
                        "param": None,
                    }
                },
            )
        ],
    )
    def get(self, request: Request, model_id: str) -> Response:
        errors.refuse_unknown_query(request, set())
        card = selectors.card_get(model_id=model_id)
        if card is None:  # a renamed model's former id answers with the card it names now
            renamed = selectors.card_renamed(model_id=model_id)
            card = selectors.card_get(model_id=renamed) if renamed else None
        if card is None:
            raise errors.model_not_found(model_id)
        # A deprecated model's entry carries Deprecation/Sunset/Link like its calls; a
        # retired one stays readable here (200, status retired): it is the catalogue's
        # record of what replaced it, while its calls answer 410.
        headers = lifecycle.lifecycle_headers(
            card,
            successor_url=lambda r: request.build_absolute_uri(
                reverse("catalog_api:model-detail", kwargs={"model_id": r.model_id})
            ),
            page_url=request.build_absolute_uri(card_path(card)),
        )
        data = self.OutputSerializer(card, context={"request": request}).data
        return Response(data, headers=headers)


class ModelListApi(APIView):
    """Published models, in display order."""

    class FilterSerializer(serializers.Serializer):
        task = serializers.SlugField(required=False, help_text="A task slug, e.g. object-detection")
        status = serializers.ChoiceField(
            choices=Status.choices,
            required=False,
            help_text="The status each model reads as: retired includes a deprecated model "
            "past its sunset date.",
        )

    @extend_schema_serializer(component_name="ModelList")
    class OutputSerializer(serializers.Serializer):
        object = serializers.SerializerMethodField()
        data = ModelDetailApi.OutputSerializer(many=True)

        def get_object(self, _) -> str:
            return "list"

    @extend_schema(
        operation_id="models_list",
        summary="List models",
        parameters=[FilterSerializer],
        tags=["models"],
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(
                errors.ErrorSerializer, "A filter has an invalid value, or is not one of these."
            ),
            405: OpenApiResponse(errors.ErrorSerializer, "Only GET is allowed."),
            406: OpenApiResponse(errors.ErrorSerializer, NOT_JSON),
        },
    )
    def get(self, request: Request) -> Response:
        # A misspelt filter (`?statsu=live`) would list every model as if it had matched.
        errors.refuse_unknown_query(request, set(self.FilterSerializer().fields))
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        # The status each model reads as (lifecycle.card_status), not the stored one: a
        # deprecated model past its sunset, whose calls answer 410, was listed under
        # ?status=deprecated and missing from ?status=retired.
        wanted = dict(filters.validated_data)
        status = wanted.pop("status", None)
        cards = selectors.card_list(filters=wanted)
        if status:
            cards = cards.filter(lifecycle.status_filter(status))
        data = self.OutputSerializer({"data": cards}, context={"request": request}).data
        return Response(data)


class EndpointNotFoundApi(APIView):
    """Any other path under /v1/: the API's JSON 404, never Django's HTML page."""

    schema = None  # not an operation: keep it out of the OpenAPI document

    def initial(self, request: Request, *args, **kwargs) -> None:
        # Raised before method dispatch, so every method gets the 404 (not a 405).
        raise errors.ApplicationError(
            errors.ENDPOINT_NOT_FOUND.format(method=request.method, path=request.path),
            code="endpoint_not_found",
            status=404,
            type=errors.NOT_FOUND_ERROR,
        )
