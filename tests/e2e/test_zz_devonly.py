import random
from datetime import timedelta
import tests.e2e.test_browser as tb
from tests.e2e.test_browser import *  # noqa

def _dev_db(url):
    from db.engine import make_engine, transaction
    from db.migrate import upgrade
    from services import auth, clock
    from tests.factories import department, create_patient, create_response
    eng = make_engine(url); upgrade(eng)
    rnd = random.Random(1)
    with transaction(eng) as s:
        d = department(s, "CARD")
        for role, pw in tb.PASSWORDS.items():
            auth.create_user(s, username="e2e_"+role, password=pw, role=role, now=clock.now(), department_code="CARD")
        auth.create_user(s, username=tb.WRONG_PASSWORD_USER, password="Right-pass-2026", role="quality", now=clock.now(), department_code="CARD")
        for i in range(200):
            p = create_patient(s, department_id=d.id)
            create_response(s, nps_score=rnd.randint(3,10), department_id=d.id, patient_id=p.id, submitted_at=clock.now()-timedelta(days=rnd.randint(0,360)))
    eng.dispose()
tb._prepare_database = _dev_db
