<?php

use WHMCS\Database\Capsule;
use WHMCS\Module\Server\Hostwright\PendingCalls;

/**
 * hostwright_ChangePassword against the gateway's change-password command
 * (POST /v1/services/{id}/change-password). Its own group: the pytest run names it apart.
 *
 * @group change-password
 */
class ChangePasswordTest extends GatewayTestCase
{
    public function testTheNewPasswordIsRecordedOnceAndNeverLogged(): void
    {
        $params = $this->activeService(5301);
        $new = 'Changed-5301-' . bin2hex(random_bytes(4));
        $this->passwords[] = $new;
        $changed = array_replace($params, ['password' => $new]);
        // attempt 1: the gateway cannot be reached; the call's key stays pending
        $closed = array_replace($this->paramsOfClosedGateway(5301), ['password' => $new]);
        self::assertStringContainsString('cannot be reached', hostwright_ChangePassword($closed));
        self::assertCount(1, Capsule::table(PendingCalls::TABLE)->get());
        // attempt 2 reaches hostwright, which records it, and its answer is lost on the way back
        $key = (new PendingCalls(self::env('TOKEN')))->keyFor('5301', 'change-password', ['password' => hash('sha256', $new)]);
        $this->hostwright()->post('/v1/services/5301/change-password', ['password' => $new], $key, 'test');
        self::assertSame(1, $this->commandsRecorded(5301, 'change-password'));
        // WHMCS retries the same call: hostwright knows its key and records nothing more
        self::assertSame('success', hostwright_ChangePassword($changed));
        self::assertSame(1, $this->commandsRecorded(5301, 'change-password'));
        self::assertCount(0, Capsule::table(PendingCalls::TABLE)->get());
        $this->waitForStatus(5301, 'active');
        self::assertNull($this->service(5301)['last_error']);

        $again = 'Changed-again-' . bin2hex(random_bytes(4));
        $this->passwords[] = $again;
        self::assertSame('success', hostwright_ChangePassword(array_replace($params, ['password' => $again])));
        self::assertSame(2, $this->commandsRecorded(5301, 'change-password'));

        self::assertStringContainsString('password must be 8 to 128 characters', hostwright_ChangePassword(array_replace($params, ['password' => 'short'])));
        self::assertSame('no new password was given', hostwright_ChangePassword(array_replace($params, ['password' => ''])));
    }
}
