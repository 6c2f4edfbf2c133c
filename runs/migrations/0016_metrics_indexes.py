# Partial indexes for /metrics' gauges: pending task instances, dead letters not retried.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0015_page_indexes'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='taskinstance',
            index=models.Index(condition=models.Q(('state', 'pending')), fields=['run'], name='ti_pending'),
        ),
        migrations.AddIndex(
            model_name='deadletter',
            index=models.Index(condition=models.Q(('retried_at__isnull', True)), fields=['created_at'], name='dead_letter_open'),
        ),
    ]
