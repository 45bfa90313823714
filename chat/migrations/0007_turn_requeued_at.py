from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_execution_status_labels"),
    ]

    operations = [
        migrations.AddField(
            model_name="turn",
            name="requeued_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
