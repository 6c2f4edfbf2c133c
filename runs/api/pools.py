"""/api/v1/pools: list pools, create or resize one; /api/v1/pools/{name}: one pool."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from dags.api_fields import StrictCharField, WholeNumberField
from dags.models import Pool
from dags.pools import PoolError, create_or_update_pool
from dags.spec import ID_PATTERN

VIEW = "dags.view_pool"
ADD = "dags.add_pool"
CHANGE = "dags.change_pool"


class PoolSerializer(serializers.ModelSerializer):
    running = serializers.IntegerField(
        read_only=True, help_text="tasks of this pool running now, across all runs"
    )

    class Meta:
        model = Pool
        fields = ["name", "slots", "running", "description", "created_at"]


class PoolInputSerializer(serializers.Serializer):
    name = StrictCharField(trim_whitespace=False, help_text="lower-case id, as `pool:` names it")
    slots = WholeNumberField(help_text="at most this many of the pool's tasks run at once")
    description = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="kept as it is when left out of an update",
    )


class PoolList(generics.ListAPIView):
    """GET: the pools, by name. POST: create a pool, or change the slots (and description)
    of the one with that name; the answer's `outcome` says which (201 created, 200
    updated)."""

    serializer_class = PoolSerializer
    read_permission = VIEW
    queryset = Pool.objects.all()

    @property
    def write_permission(self) -> str:
        # Changing an existing pool takes the change permission, creating one the add one.
        body = self.request.data
        name = body.get("name") if isinstance(body, dict) else None
        exists = isinstance(name, str) and Pool.objects.filter(name=name).exists()
        return CHANGE if exists else ADD

    @extend_schema(
        request=PoolInputSerializer,
        responses={
            201: PoolSerializer,
            200: PoolSerializer,
            400: OpenApiResponse(description="rejected; nothing was changed"),
        },
    )
    def post(self, request):
        body = PoolInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            pool, created = create_or_update_pool(**body.validated_data)
        except PoolError as exc:
            raise ValidationError(str(exc)) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        outcome = "created" if created else "updated"
        return Response({**PoolSerializer(pool).data, "outcome": outcome}, status=code)


class PoolDetail(APIView):
    """GET: one pool, by name."""

    read_permission = VIEW

    @extend_schema(responses=PoolSerializer)
    def get(self, request, name: str):
        # A name no pool can have is not looked up (a NUL in it would not even reach SQL).
        pool = Pool.objects.filter(name=name).first() if ID_PATTERN.fullmatch(name) else None
        if pool is None:
            raise NotFound(f"no pool named '{name}'; see GET /api/v1/pools")
        return Response(PoolSerializer(pool).data)
